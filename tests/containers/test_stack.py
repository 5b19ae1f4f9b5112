"""The one-server stack's images and files, run together (`make stack-test`).

The stack's Mosquitto, PostgreSQL and Prometheus images are built from the local Debian
base plus Debian's packages, the bridge image from cloud_bridge/Dockerfile, and run with
the files of deploy/compose (mosquitto.conf, the ACL, bridge.yaml, the secrets that
init-secrets.sh makes). The test machines allow host networking only, so instead of
`docker-compose up` each service is a `docker run --network host` on free loopback
ports, with the compose service names (`broker`, `postgres`) mapped to 127.0.0.1.
Grafana is not run (no Debian package; its upstream image cannot be fetched here).
Slow on a cold cache (three apt-based image builds): set CULTIVAI_STACK_TEST=1.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError

from cloud_bridge.tables import ObservationRow
from tests.bridge.factory import observation_message, wait_for
from tests.containers import images
from tests.containers.conftest import REPO, missing
from tests.containers.dockerd import PrivateDockerd
from tests.mqtt_broker import free_port

pytestmark = [
    pytest.mark.timeout(2400),
    pytest.mark.stack,
    pytest.mark.container,
    pytest.mark.skipif(
        os.environ.get("CULTIVAI_STACK_TEST") != "1",
        reason="the stack bring-up runs with `make stack-test` (CULTIVAI_STACK_TEST=1)",
    ),
]
COMPOSE = REPO / "deploy" / "compose"
HOSTS = ("--add-host=broker:127.0.0.1", "--add-host=postgres:127.0.0.1")


class Stack:
    """The running services; every container is removed at the end."""

    def __init__(self, docker: PrivateDockerd, work: Path) -> None:
        self.docker = docker
        self.work = work
        self.secrets = work / "secrets"
        self.tag = uuid.uuid4().hex[:6]
        self.names: list[str] = []
        self.mqtt_port = free_port()
        self.pg_port = free_port()
        self.bridge_ports = {1: free_port(), 2: free_port()}
        self.prom_port = free_port()

    def run(self, name: str, *args: str, detach: bool = True) -> subprocess.CompletedProcess[str]:
        """docker run one service on the host network."""
        full = f"stack-{self.tag}-{name}"
        self.names.append(full)
        flags = ["--detach"] if detach else []
        return self.docker.docker("run", *flags, f"--name={full}", "--network=host", *args)

    def logs(self, name: str) -> str:
        """A service's output."""
        done = self.docker.docker("logs", f"stack-{self.tag}-{name}", check=False)
        return (done.stdout + done.stderr)[-4000:]

    def secret(self, name: str, target: str | None = None) -> str:
        """A --volume flag mounting one secret file read-only."""
        return f"--volume={self.secrets / name}:{target or '/run/secrets/' + name}:ro"

    def remove(self) -> None:
        """Remove every container started."""
        if self.names:
            self.docker.docker("rm", "--force", *self.names, check=False)


@pytest.fixture
def stack(dockerd: PrivateDockerd, base_image: str, tmp_path: Path) -> Iterator[Stack]:
    """Secrets made by init-secrets.sh for one device; the stack's images built."""
    if shutil.which("openssl") is None:
        missing("openssl is needed (make system-deps installs it)")
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE, work, ignore=shutil.ignore_patterns("secrets", "devices.txt"))
    (work / "devices.txt").write_text("cam-veg-1\n")
    subprocess.run(["sh", str(work / "init-secrets.sh")], check=True, capture_output=True)
    running = Stack(dockerd, work)
    yield running
    running.remove()


def stored(url: str) -> int:
    """Observations in the stack's database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ObservationRow)).scalar_one())
    finally:
        engine.dispose()


def metric(port: int, token: str, name: str) -> float:
    """One sample from a bridge's /metrics."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=3) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


def test_stack_stores_a_device_once_through_both_bridges(
    stack: Stack, dockerd: PrivateDockerd, base_image: str, bridge_image: str
) -> None:
    """Broker (TLS, ACL), PostgreSQL, migrate, two bridges, Prometheus: end to end."""
    mosquitto = images.build_stack_image(dockerd, base_image, "mosquitto")
    postgres = images.build_stack_image(dockerd, base_image, "postgres")
    prometheus = images.build_stack_image(dockerd, base_image, "prometheus")
    s = stack.secrets
    conf = (stack.work / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("listener 8883", f"listener {stack.mqtt_port} 127.0.0.1")
    conf = conf.replace("listener 1883 127.0.0.1", f"listener {free_port()} 127.0.0.1")
    (stack.work / "mosquitto.conf").write_text(conf)
    stack.run(
        "broker",
        f"--volume={stack.work / 'mosquitto.conf'}:/etc/mosquitto/mosquitto.conf:ro",
        f"--volume={stack.work / 'mosquitto' / 'cultivai.acl'}:/etc/mosquitto/cultivai.acl:ro",
        stack.secret("mosquitto.passwd", "/etc/mosquitto/cultivai.passwd"),
        stack.secret("ca.crt", "/etc/mosquitto/certs/ca.crt"),
        stack.secret("broker.crt", "/etc/mosquitto/certs/broker.crt"),
        stack.secret("broker.key", "/etc/mosquitto/certs/broker.key"),
        "--tmpfs=/var/lib/mosquitto:mode=1777",
        mosquitto,
    )
    stack.run(
        "postgres",
        "--env=POSTGRES_DB=cultivai",
        "--env=POSTGRES_USER=cultivai_bridge",
        "--env=POSTGRES_PASSWORD_FILE=/run/secrets/db-password",
        "--env=POSTGRES_LISTEN_ADDRESSES=127.0.0.1",
        f"--env=PGPORT={stack.pg_port}",
        "--env=GRAFANA_DB_USER=cultivai_grafana",
        "--env=GRAFANA_DB_PASSWORD_FILE=/run/secrets/grafana-db-password",
        stack.secret("db-password"),
        stack.secret("grafana-db-password"),
        postgres,
    )
    password = (s / "db-password").read_text().strip()
    url = f"postgresql+psycopg://cultivai_bridge:{password}@127.0.0.1:{stack.pg_port}/cultivai"
    env_db = f"--env=CULTIVAI_BRIDGE__DATABASE__URL=postgresql+psycopg://cultivai_bridge@postgres:{stack.pg_port}/cultivai"
    bridge_common = [
        *HOSTS,
        "--read-only",
        "--tmpfs=/tmp",
        "--cap-drop=ALL",
        f"--volume={stack.work / 'bridge.yaml'}:/etc/cultivai/bridge.yaml:ro",
        stack.secret("db-password"),
        env_db,
        f"--env=CULTIVAI_BRIDGE__MQTT__PORT={stack.mqtt_port}",
    ]

    def migrate_ok() -> bool:
        done = stack.docker.docker(
            "run", "--rm", "--network=host", *bridge_common, bridge_image, "migrate", check=False
        )
        return done.returncode == 0

    wait_for(
        migrate_ok, 90, f"migrate against the stack's PostgreSQL:\n{stack.logs('postgres')}", 2
    )
    for n, port in stack.bridge_ports.items():
        stack.run(
            f"bridge-{n}",
            *bridge_common,
            stack.secret("api-token"),
            stack.secret("ca.crt"),
            stack.secret(f"mqtt-bridge-{n}"),
            f"--env=CULTIVAI_BRIDGE__MQTT__CLIENT_ID=cultivai-bridge-{n}",
            f"--env=CULTIVAI_BRIDGE__MQTT__USERNAME=cultivai-bridge-{n}",
            f"--env=CULTIVAI_BRIDGE__MQTT__PASSWORD_FILE=/run/secrets/mqtt-bridge-{n}",
            "--env=CULTIVAI_BRIDGE__HTTP__HOST=127.0.0.1",
            f"--env=CULTIVAI_BRIDGE__HTTP__PORT={port}",
            bridge_image,
        )
    for n, port in stack.bridge_ports.items():

        def ready(port: int = port) -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, 60, f"bridge-{n} ready:\n{stack.logs(f'bridge-{n}')}", 0.5)

    # A device publishes over TLS with the credentials init-secrets.sh made for it.
    device = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="cam-veg-1", protocol=MQTTProtocolVersion.MQTTv5
    )
    device.tls_set(ca_certs=str(s / "ca.crt"), tls_version=ssl.PROTOCOL_TLS_CLIENT)
    device.tls_insecure_set(False)
    device.username_pw_set("cam-veg-1", (s / "device-cam-veg-1").read_text().strip())
    device.connect("localhost", stack.mqtt_port)
    device.loop_start()
    total = 30
    try:
        for seq in range(1, total + 1):
            t, p = observation_message("cam-veg-1", seq)
            device.publish(t, p, qos=1).wait_for_publish(10)
    finally:
        device.disconnect()
        device.loop_stop()
    wait_for(lambda: stored(url) == total, 60, f"{total} observations stored")
    token = (s / "api-token").read_text().strip()
    received = 'cultivai_bridge_messages_received_total{kind="observation"}'
    for port in stack.bridge_ports.values():
        wait_for(lambda p=port: metric(p, token, received) >= total, 30, "both bridges received")
    time.sleep(1.0)
    assert stored(url) == total

    # Grafana's role, made by the PostgreSQL entrypoint, reads the tables the migration
    # made after it, and may not write.
    reader = (s / "grafana-db-password").read_text().strip()
    grafana_url = (
        f"postgresql+psycopg://cultivai_grafana:{reader}@127.0.0.1:{stack.pg_port}/cultivai"
    )
    assert stored(grafana_url) == total
    engine = create_engine(grafana_url)
    try:
        with (
            pytest.raises(DBAPIError, match=r"read-only transaction|permission denied"),
            engine.begin() as conn,
        ):
            conn.execute(text("DELETE FROM observations"))
    finally:
        engine.dispose()
    assert stored(url) == total

    # Prometheus from Debian's package loads the fleet's config and rules as mounted.
    prom_dir = Path(os.environ.get("CULTIVAI_STACK_PROMETHEUS_DIR", REPO / "deploy" / "prometheus"))
    # The fleet's Prometheus config ships with the repository: its absence is a failure.
    assert (prom_dir / "prometheus.yml").is_file(), f"{prom_dir}/prometheus.yml is missing"
    prom_mounts = [
        # As compose.yaml mounts them.
        f"--volume={prom_dir / 'prometheus.yml'}:/etc/prometheus/prometheus.yml:ro",
        f"--volume={prom_dir / 'rules'}:/etc/prometheus/rules:ro",
        f"--volume={prom_dir / 'targets'}:/etc/prometheus/targets:ro",
        stack.secret("api-token", "/etc/prometheus/secrets/bridge-token"),
        stack.secret("agent-token", "/etc/prometheus/secrets/agent-token"),
    ]
    check = stack.docker.docker(
        "run",
        "--rm",
        "--network=host",
        *prom_mounts,
        "--entrypoint=promtool",
        prometheus,
        "check",
        "config",
        "/etc/prometheus/prometheus.yml",
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    stack.run(
        "prometheus",
        *prom_mounts,
        prometheus,
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        f"--web.listen-address=127.0.0.1:{stack.prom_port}",
    )

    def prometheus_ready() -> bool:
        try:
            url = f"http://127.0.0.1:{stack.prom_port}/-/ready"
            with urllib.request.urlopen(url, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(prometheus_ready, 60, "Prometheus ready", 0.5)
    except AssertionError as exc:
        raise AssertionError(f"{exc}:\n{stack.logs('prometheus')}") from None
