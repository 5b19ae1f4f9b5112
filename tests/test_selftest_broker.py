"""selftest's broker check is a real MQTT CONNECT: credentials and TLS, on a real Mosquitto."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.broker_check import try_connect
from edge.config import MqttConfig
from tests.mqtt_broker import Broker, find_mosquitto
from tests.test_mqtt_security import make_certificates


@pytest.fixture
def password_broker(tmp_path: Path) -> Iterator[Broker]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "dev-a", "pw-a"], check=True)
    broker = Broker(tmp_path / "broker", extra=f"allow_anonymous false\npassword_file {passwd}\n")
    yield broker.start()
    broker.stop()


def _mqtt(broker: Broker, tmp_path: Path, password: str | None, **extra: object) -> MqttConfig:
    fields: dict[str, object] = {"enabled": True, "host": broker.host, "port": broker.port}
    if password is not None:
        (tmp_path / "pw").write_text(password + "\n")
        fields |= {"username": "dev-a", "password_file": tmp_path / "pw"}
    return MqttConfig.model_validate(fields | extra)


def test_the_right_credentials_are_accepted(password_broker: Broker, tmp_path: Path) -> None:
    result = try_connect(_mqtt(password_broker, tmp_path, "pw-a"), "dev-a-selftest")
    assert result.accepted, result.detail
    assert "CONNECT accepted (MQTT 5, plain TCP, user dev-a)" in result.detail


def test_a_wrong_password_fails_with_the_brokers_reason_code(
    password_broker: Broker, tmp_path: Path
) -> None:
    result = try_connect(_mqtt(password_broker, tmp_path, "wrong"), "dev-a-selftest")
    assert not result.accepted
    assert "broker refused CONNECT" in result.detail and "reason code 13" in result.detail


def test_no_credentials_fail_against_a_broker_that_needs_them(
    password_broker: Broker, tmp_path: Path
) -> None:
    result = try_connect(_mqtt(password_broker, tmp_path, None), "dev-a-selftest")
    assert not result.accepted and "broker refused CONNECT" in result.detail


def test_a_missing_password_file_fails_naming_it(password_broker: Broker, tmp_path: Path) -> None:
    config = _mqtt(password_broker, tmp_path, None, username="dev-a", password_file=tmp_path / "x")
    result = try_connect(config, "dev-a-selftest")
    assert not result.accepted and f"mqtt.password_file {tmp_path}/x" in result.detail


def test_a_3_1_1_broker_answers_too(password_broker: Broker, tmp_path: Path) -> None:
    config = _mqtt(password_broker, tmp_path, "wrong", protocol="3.1.1")
    result = try_connect(config, "dev-a-selftest")
    assert not result.accepted and "reason code" in result.detail


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[tuple[Broker, dict[str, Path]]]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    certs = make_certificates(tmp_path / "certs")
    extra = (
        f"cafile {certs['ca.crt']}\ncertfile {certs['broker.crt']}\nkeyfile {certs['broker.key']}\n"
    )
    broker = Broker(tmp_path / "broker", extra=extra).start()
    yield broker, certs
    broker.stop()


def test_tls_with_the_right_ca_is_accepted(
    tls_broker: tuple[Broker, dict[str, Path]], tmp_path: Path
) -> None:
    broker, certs = tls_broker
    config = _mqtt(broker, tmp_path, None, tls={"ca_file": certs["ca.crt"]})
    result = try_connect(config, "dev-a-selftest")
    assert result.accepted, result.detail
    assert "TLS" in result.detail


def test_tls_with_a_missing_ca_file_fails(
    tls_broker: tuple[Broker, dict[str, Path]], tmp_path: Path
) -> None:
    broker, _ = tls_broker
    config = _mqtt(broker, tmp_path, None, tls={"ca_file": tmp_path / "no-ca.crt"})
    result = try_connect(config, "dev-a-selftest")
    assert not result.accepted and "mqtt.tls files cannot be loaded" in result.detail


def test_tls_with_a_ca_that_did_not_sign_the_broker_fails(
    tls_broker: tuple[Broker, dict[str, Path]], tmp_path: Path
) -> None:
    broker, _ = tls_broker
    other = make_certificates(tmp_path / "other")
    config = _mqtt(broker, tmp_path, None, tls={"ca_file": other["ca.crt"]})
    result = try_connect(config, "dev-a-selftest")
    assert not result.accepted and "certificate is not trusted" in result.detail


def test_plain_mqtt_against_a_tls_port_fails(
    tls_broker: tuple[Broker, dict[str, Path]], tmp_path: Path
) -> None:
    broker, _ = tls_broker
    result = try_connect(_mqtt(broker, tmp_path, None), "dev-a-selftest", timeout_s=3)
    assert not result.accepted


def test_selftest_fails_the_broker_part_for_refused_credentials(
    password_broker: Broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import yaml

    from edge.cli import main

    (tmp_path / "pw").write_text("wrong\n")
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"id": "dev-a"},
                "storage": {"dir": str(tmp_path / "data"), "min_free_mb": 0},
                "camera": {"backend": "synthetic", "width": 320, "height": 240},
                "model": {"enabled": False},
                "mqtt": {
                    "enabled": True,
                    "host": password_broker.host,
                    "port": password_broker.port,
                    "username": "dev-a",
                    "password_file": str(tmp_path / "pw"),
                },
            }
        )
    )
    assert main(["selftest", "--config", str(config), "--json"]) == 1
    parts = {r["part"]: r for r in json.loads(capsys.readouterr().out)}
    assert parts["broker"]["state"] == "fail"
    assert "broker refused CONNECT" in parts["broker"]["detail"]
    assert parts["config"]["state"] == "ok"
