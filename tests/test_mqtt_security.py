"""The shipped broker ACL, per-device credentials and TLS, on a real Mosquitto."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edge.agent import Agent
from edge.clock import FakeClock
from tests.conftest import REPO, make_config
from tests.mqtt_broker import Broker, find_mosquitto
from tests.mqtt_client import Recorder

ACL = REPO / "examples" / "mosquitto" / "cultivai.acl"
USERS = {"dev-a": "pw-a", "dev-b": "pw-b", "cultivai-bridge": "pw-bridge"}


@pytest.fixture
def secured_broker(tmp_path: Path) -> Iterator[Broker]:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    passwd = tmp_path / "passwd"
    for i, (user, password) in enumerate(USERS.items()):
        flags = ["-c"] if i == 0 else []
        subprocess.run(["mosquitto_passwd", *flags, "-b", str(passwd), user, password], check=True)
    extra = f"allow_anonymous false\npassword_file {passwd}\nacl_file {ACL}\n"
    broker = Broker(tmp_path / "broker", extra=extra).start()
    yield broker
    broker.stop()


class Client:
    """A v5 client that records the reason codes the broker answers with."""

    def __init__(self, broker: Broker, user: str, password: str) -> None:
        self.acks: dict[int, Any] = {}
        self.done = threading.Condition()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=user, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.c.username_pw_set(user, password)
        self.c.on_publish = self._record
        self.c.on_subscribe = lambda c, u, mid, codes, p: self._record(c, u, mid, codes, p)
        connected = threading.Event()
        self.connect_reason: Any = None

        def on_connect(c: Any, u: Any, f: Any, reason: Any, p: Any) -> None:
            self.connect_reason = reason
            connected.set()

        self.c.on_connect = on_connect
        self.c.connect(broker.host, broker.port)
        self.c.loop_start()
        assert connected.wait(10)

    def _record(self, c: Any, u: Any, mid: int, reason: Any, p: Any) -> None:
        with self.done:
            self.acks[mid] = reason
            self.done.notify_all()

    def wait(self, mid: int) -> Any:
        with self.done:
            assert self.done.wait_for(lambda: mid in self.acks, timeout=10)
            return self.acks[mid]

    def publish(self, topic: str) -> Any:
        return self.wait(self.c.publish(topic, b"{}", qos=1).mid)

    def subscribe(self, topic: str) -> Any:
        _, mid = self.c.subscribe(topic, qos=1)
        return self.wait(mid)[0]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def test_a_device_cannot_publish_to_another_devices_topics(secured_broker: Broker) -> None:
    a = Client(secured_broker, "dev-a", "pw-a")
    assert not a.publish("cultivai/v1/dev-a/observation").is_failure
    denied = a.publish("cultivai/v1/dev-b/observation")
    assert denied.is_failure and denied.getName() == "Not authorized"
    assert a.publish("cultivai/v1/dev-b/cmd/capture").is_failure
    a.close()


def test_a_device_cannot_read_another_devices_topics(secured_broker: Broker) -> None:
    # Mosquitto grants the subscription but never delivers what the ACL denies.
    spy = Recorder(
        secured_broker.host,
        secured_broker.port,
        ["cultivai/v1/dev-b/#", "cultivai/v1/+/observation"],
        client_id="dev-a",
        username="dev-a",
        password="pw-a",
    )
    victim = Recorder(
        secured_broker.host,
        secured_broker.port,
        ["cultivai/v1/dev-b/cmd/+"],
        client_id="dev-b",
        username="dev-b",
        password="pw-b",
    )
    bridge = Client(secured_broker, "cultivai-bridge", "pw-bridge")
    assert not bridge.publish("cultivai/v1/dev-b/cmd/resend").is_failure
    assert victim.wait_for(lambda: len(victim.on("/cmd/resend")) == 1)
    assert not spy.wait_for(lambda: bool(spy.messages), timeout=1.0)
    for client in (spy, victim, bridge):
        client.close()


def test_the_bridge_reads_all_devices_and_may_send_commands(secured_broker: Broker) -> None:
    bridge = Client(secured_broker, "cultivai-bridge", "pw-bridge")
    assert not bridge.subscribe("cultivai/v1/+/observation").is_failure
    assert not bridge.publish("cultivai/v1/dev-a/cmd/resend").is_failure
    assert bridge.publish("cultivai/v1/dev-a/observation").is_failure
    bridge.close()


def test_wrong_password_is_refused(secured_broker: Broker) -> None:
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="dev-a", protocol=MQTTProtocolVersion.MQTTv5
    )
    c.username_pw_set("dev-a", "wrong")
    reasons: list[Any] = []
    c.on_connect = lambda cl, u, f, reason, p: reasons.append(reason)
    c.connect(secured_broker.host, secured_broker.port)
    for _ in range(50):
        c.loop(0.1)
        if reasons:
            break
    assert reasons and reasons[0].is_failure


def test_agent_publishes_with_credentials_from_a_file(
    tmp_path: Path, secured_broker: Broker, clock: FakeClock
) -> None:
    password_file = tmp_path / "mqtt-password"
    password_file.write_text("pw-a\n")
    recorder = Recorder(
        secured_broker.host,
        secured_broker.port,
        ["cultivai/v1/+/observation"],
        client_id="cultivai-bridge",
        username="cultivai-bridge",
        password="pw-bridge",
    )
    cfg = make_config(
        tmp_path / "data",
        device={"id": "dev-a"},
        camera={"width": 320, "height": 240},
        mqtt={
            "enabled": True,
            "host": secured_broker.host,
            "port": secured_broker.port,
            "username": "dev-a",
            "password_file": str(password_file),
        },
    )
    agent = Agent(cfg, clock=clock).start()
    agent.run(max_captures=2)
    assert recorder.wait_for(lambda: len(recorder.on("/observation")) == 2)
    assert agent.link is not None and agent.link.connected
    agent.close()
    recorder.close()


def make_certificates(folder: Path) -> dict[str, Path]:
    """A throw-away CA and a broker certificate for 127.0.0.1."""
    folder.mkdir()
    p = {
        n: folder / n
        for n in ("ca.key", "ca.crt", "broker.key", "broker.csr", "broker.crt", "san.cnf")
    }

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        str(p["ca.key"]),
        "-out",
        str(p["ca.crt"]),
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(p["broker.key"]),
        "-out",
        str(p["broker.csr"]),
    )
    p["san.cnf"].write_text("subjectAltName=IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(p["broker.csr"]),
        "-CA",
        str(p["ca.crt"]),
        "-CAkey",
        str(p["ca.key"]),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(p["san.cnf"]),
        "-out",
        str(p["broker.crt"]),
    )
    return p


def test_agent_publishes_over_tls(tmp_path: Path, clock: FakeClock) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    certs = make_certificates(tmp_path / "certs")
    from tests.mqtt_broker import free_port

    plain = free_port()
    extra = (
        f"cafile {certs['ca.crt']}\ncertfile {certs['broker.crt']}\n"
        f"keyfile {certs['broker.key']}\n"
        f"listener {plain} 127.0.0.1\n"
    )  # a plain listener for the test's recorder
    broker = Broker(tmp_path / "broker", extra=extra).start()
    try:
        recorder = Recorder(broker.host, plain, ["cultivai/v1/+/observation"])
        cfg = make_config(
            tmp_path / "data",
            camera={"width": 320, "height": 240},
            mqtt={
                "enabled": True,
                "host": "127.0.0.1",
                "port": broker.port,
                "tls": {"ca_file": str(certs["ca.crt"])},
            },
        )
        agent = Agent(cfg, clock=clock).start()
        agent.run(max_captures=1)
        assert recorder.wait_for(lambda: len(recorder.on("/observation")) == 1)
        agent.close()
        recorder.close()
    finally:
        broker.stop()
