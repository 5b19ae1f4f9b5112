"""The one-server stack (deploy/compose): valid for Debian's docker-compose, and its
broker configuration, ACL and secrets script work with a real Mosquitto.

Bringing the whole stack up needs a compose network between containers, which the
test machines do not allow (containers here use the host network only): see
docs/deploy.md for what is and is not run here.
"""

from __future__ import annotations

import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.containers.conftest import REPO, missing
from tests.mqtt_broker import find_mosquitto, free_port

COMPOSE = REPO / "deploy" / "compose"
BRIDGES = ("bridge-1", "bridge-2")


def compose_config() -> dict[str, Any]:
    """`docker-compose config`: the file as Debian's docker-compose reads it."""
    if shutil.which("docker-compose") is None:
        missing("docker-compose not found (make system-deps installs it)")
    done = subprocess.run(
        ["docker-compose", "--file", str(COMPOSE / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=COMPOSE,
    )
    assert done.returncode == 0, done.stderr
    return dict(yaml.safe_load(done.stdout))


def test_compose_file_is_valid_with_every_service() -> None:
    """docker-compose accepts it; broker, database, migration, two bridges, monitoring."""
    services = compose_config()["services"]
    assert set(services) == {
        "broker",
        "postgres",
        "migrate",
        *BRIDGES,
        "prometheus",
        "grafana",
    }


def test_bridges_have_their_own_broker_users_and_run_locked_down() -> None:
    """Client id = broker user, one per bridge; read-only, no capabilities; after migrate."""
    services = compose_config()["services"]
    users = set()
    for name in (*BRIDGES, "migrate"):
        svc = services[name]
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        assert svc["build"]["dockerfile"] == "cloud_bridge/Dockerfile"
    for name in BRIDGES:
        env = services[name]["environment"]
        assert env["CULTIVAI_BRIDGE__MQTT__CLIENT_ID"] == env["CULTIVAI_BRIDGE__MQTT__USERNAME"]
        users.add(env["CULTIVAI_BRIDGE__MQTT__USERNAME"])
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert users == {"cultivai-bridge-1", "cultivai-bridge-2"}


def test_only_the_broker_is_published_beyond_loopback() -> None:
    """Devices reach MQTT over TLS; the database, API, Prometheus and Grafana stay local."""
    services = compose_config()["services"]
    for name, svc in services.items():
        for port in svc.get("ports", []):
            # docker-compose 1.29 prints "IP:HOST:TARGET/PROTO" strings, or mappings.
            if isinstance(port, str):
                parts = port.split("/")[0].split(":")
                host_ip, target = (parts[0] if len(parts) == 3 else ""), int(parts[-1])
            else:
                host_ip, target = port.get("host_ip", ""), int(port["target"])
            if name == "broker":
                assert target == 8883
            else:
                assert host_ip == "127.0.0.1", (name, port)


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (or volume name) of a service's volumes."""
    found = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        found[target] = source
    return found


def test_monitoring_mounts_the_fleet_prometheus_and_grafana_files() -> None:
    """Prometheus loads deploy/prometheus as kept in git; Grafana deploy/grafana."""
    services = compose_config()["services"]
    prom = mounts(services["prometheus"])
    fleet = REPO / "deploy" / "prometheus"
    assert Path(prom["/etc/prometheus/prometheus.yml"]) == fleet / "prometheus.yml"
    assert Path(prom["/etc/prometheus/rules"]) == fleet / "rules"
    assert Path(prom["/etc/prometheus/targets"]) == fleet / "targets"
    graf = mounts(services["grafana"])
    grafana = REPO / "deploy" / "grafana"
    assert Path(graf["/etc/grafana/provisioning"]) == grafana / "provisioning"
    # The dashboards sit where the dashboard provider reads them.
    for provider_file in sorted((grafana / "provisioning" / "dashboards").glob("*.yml")):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            path = provider["options"]["path"]
            assert path in graf, f"{provider_file.name} reads {path}; nothing is mounted there"
            assert Path(graf[path]) == grafana / "dashboards"
            assert list(Path(graf[path]).glob("*.json"))


def test_grafana_has_every_value_its_provisioning_reads() -> None:
    """Each ${VAR} in deploy/grafana/provisioning is set in the grafana service."""
    service = compose_config()["services"]["grafana"]
    env = dict(service.get("environment") or {})
    command = " ".join(service.get("command") or [])
    wanted: set[str] = set()
    for path in sorted((REPO / "deploy" / "grafana" / "provisioning").rglob("*.yml")):
        wanted |= set(re.findall(r"\$\{(\w+)\}", path.read_text()))
    assert wanted
    for name in sorted(wanted):
        # Set in the environment, or exported by the start command from a secret.
        assert env.get(name) or f"export {name}" in command, f"{name} is not set for Grafana"
    # Grafana reads the database as its own read-only role, not as the bridge's owner.
    assert env["CULTIVAI_GRAFANA_DB_USER"] == "cultivai_grafana"
    assert "db-password" not in [
        s if isinstance(s, str) else s["source"] for s in service["secrets"]
    ]
    postgres = compose_config()["services"]["postgres"]
    assert postgres["environment"]["GRAFANA_DB_USER"] == "cultivai_grafana"


def test_init_secrets_keeps_device_passwords_private_and_takes_ipv6(tmp_path: Path) -> None:
    """Only what a container reads is readable by others; an IPv6 address is an IP SAN."""
    if shutil.which("openssl") is None or find_mosquitto() is None:
        missing("mosquitto and openssl are needed (make system-deps installs them)")
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE, work, ignore=shutil.ignore_patterns("secrets", "devices.txt"))
    (work / "devices.txt").write_text("cam-veg-1\n")
    done = subprocess.run(
        ["sh", str(work / "init-secrets.sh")],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "BROKER_NAMES": "mqtt.farm.example,192.0.2.10,2001:db8::7"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    secrets = work / "secrets"
    mounted = set()
    for service in yaml.safe_load((COMPOSE / "compose.yaml").read_text())["services"].values():
        for volume in service.get("volumes", []):
            if isinstance(volume, str) and volume.startswith("./secrets/"):
                mounted.add(volume.split(":")[0].removeprefix("./secrets/"))
    for secret in yaml.safe_load((COMPOSE / "compose.yaml").read_text())["secrets"].values():
        mounted.add(secret["file"].removeprefix("./secrets/"))
    for path in sorted(secrets.iterdir()):
        mode = path.stat().st_mode & 0o777
        if path.name in mounted:
            assert mode == 0o644, f"{path.name}: {mode:o}"
        else:
            assert mode & 0o077 == 0, f"{path.name} is readable by others: {mode:o}"
    assert (secrets / "device-cam-veg-1").stat().st_mode & 0o777 == 0o600
    assert (secrets.stat().st_mode & 0o777) == 0o700
    text = subprocess.run(
        ["openssl", "x509", "-in", str(secrets / "broker.crt"), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:mqtt.farm.example" in text and "IP Address:192.0.2.10" in text
    assert re.search(r"IP Address:2001:DB8:(0:)*:?7\b", text, re.IGNORECASE), text
    assert "DNS:2001" not in text


def expected_acl() -> str:
    """The shipped fleet ACL with its bridge block repeated for each compose bridge user."""
    shipped = (REPO / "examples" / "mosquitto" / "cultivai.acl").read_text()
    head, block = shipped.split("# The cloud bridge reads", 1)
    block = "# The cloud bridge reads" + block
    out = (
        "# Generated from examples/mosquitto/cultivai.acl for the one-server stack: the bridge\n"
        "# block once per bridge user (tests/containers/test_compose.py checks it).\n" + head
    )
    for n in (1, 2):
        out += block.replace("user cultivai-bridge\n", f"user cultivai-bridge-{n}\n")
        if not out.endswith("\n\n"):
            out += "\n"
    return out.rstrip("\n") + "\n"


def test_compose_acl_is_the_shipped_acl_per_bridge() -> None:
    """The stack's ACL does not drift from the fleet's."""
    assert (COMPOSE / "mosquitto" / "cultivai.acl").read_text() == expected_acl()


@pytest.fixture
def stack_broker(tmp_path: Path) -> Any:
    """Mosquitto on the host with the stack's config and secrets made by init-secrets.sh."""
    binary = find_mosquitto()
    if binary is None or shutil.which("openssl") is None:
        missing("mosquitto and openssl are needed (make system-deps installs them)")
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE, work, ignore=shutil.ignore_patterns("secrets", "devices.txt"))
    (work / "devices.txt").write_text("# device ids\ncam-veg-1\n")
    done = subprocess.run(
        ["sh", str(work / "init-secrets.sh")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    secrets = work / "secrets"
    port = free_port()
    conf = (work / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 8883", f"listener {port} 127.0.0.1")
    conf = conf.replace("listener 1883 127.0.0.1", f"listener {free_port()} 127.0.0.1")
    conf = conf.replace("/etc/mosquitto/cultivai.passwd", str(secrets / "mosquitto.passwd"))
    conf = conf.replace("/etc/mosquitto/cultivai.acl", str(work / "mosquitto" / "cultivai.acl"))
    conf = conf.replace("/etc/mosquitto/certs/", f"{secrets}/")
    conf = conf.replace("/var/lib/mosquitto/", f"{tmp_path}/")
    if os.geteuid() == 0:  # as root, mosquitto would switch to a user that cannot read tmp
        conf = "user root\n" + conf
    (tmp_path / "mosquitto.conf").write_text(conf)
    proc = subprocess.Popen(
        [binary, "-c", str(tmp_path / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "mosquitto.log").open("wb"),
    )
    time.sleep(0.5)
    yield port, secrets
    proc.terminate()
    proc.wait(10)


def tls_connect(port: int, secrets: Path, user: str | None, password: str | None) -> int:
    """CONNACK reason code of an MQTT 5 TLS connection (0: accepted)."""
    result: list[int] = []
    got = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="probe", protocol=MQTTProtocolVersion.MQTTv5
    )
    client.tls_set(ca_certs=str(secrets / "ca.crt"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    if user is not None:
        client.username_pw_set(user, password)

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        result.append(int(reason.value))
        got.set()

    client.on_connect = on_connect
    for _ in range(50):
        try:
            client.connect("127.0.0.1", port)
            break
        except OSError:
            time.sleep(0.1)
    client.loop_start()
    try:
        assert got.wait(10), "no CONNACK"
        return result[0]
    finally:
        client.disconnect()
        client.loop_stop()


def test_stack_broker_takes_tls_bridges_and_devices_and_refuses_strangers(
    stack_broker: tuple[int, Path],
) -> None:
    """With init-secrets.sh's files, bridges and listed devices log in over TLS; others not."""
    port, secrets = stack_broker
    for user, file in (
        ("cultivai-bridge-1", "mqtt-bridge-1"),
        ("cultivai-bridge-2", "mqtt-bridge-2"),
        ("cam-veg-1", "device-cam-veg-1"),
    ):
        assert tls_connect(port, secrets, user, (secrets / file).read_text().strip()) == 0, user
    assert tls_connect(port, secrets, None, None) != 0
    assert tls_connect(port, secrets, "cultivai-bridge-1", "wrong") != 0
