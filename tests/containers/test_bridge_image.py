"""The bridge image, run as a container against a real Mosquitto and PostgreSQL.

Built from cloud_bridge/Dockerfile on a Debian base made locally; run with a read-only
root, no capabilities and host networking, as a pod would run it.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select, text

from cloud_bridge.tables import ObservationRow
from tests.bridge.conftest import TEMPLATE
from tests.bridge.factory import observation_message, publish_all, wait_for
from tests.bridge.pg import PgCluster
from tests.containers.bridge_container import BridgeContainer, bridge_settings
from tests.containers.dockerd import PrivateDockerd
from tests.mqtt_broker import Broker, find_mosquitto

# The first test builds the images on a cold cache (debootstrap, wheels, image build).
pytestmark = [pytest.mark.container, pytest.mark.timeout(1500)]
BRIDGE_UID = 10001


def stored(url: str) -> int:
    """Observations in the database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(ObservationRow)).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private Mosquitto for the module's containers."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (make system-deps installs it)")
    broker = Broker(tmp_path_factory.mktemp("broker")).start()
    yield broker
    broker.stop()


def fresh_database(cluster: PgCluster) -> str:
    """A new migrated database on the test cluster."""
    name = f"ctr_{uuid.uuid4().hex[:12]}"
    cluster.create_database(name, template=TEMPLATE)
    return cluster.url(name)


@pytest.fixture(scope="module")
def running(
    dockerd: PrivateDockerd,
    bridge_image: str,
    module_broker: Broker,
    pg_cluster: PgCluster,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[BridgeContainer, str]]:
    """One bridge container, ready, and the URL of its database."""
    url = fresh_database(pg_cluster)
    settings = bridge_settings(module_broker.port, url, f"ctr-{uuid.uuid4().hex[:6]}")
    container = BridgeContainer(dockerd, bridge_image, tmp_path_factory.mktemp("ctr"), settings)
    seconds = container.start()
    size = int(dockerd.docker("image", "inspect", "--format", "{{.Size}}", bridge_image).stdout)
    print(f"\nbridge image {bridge_image}: {size / 1e6:.0f} MB; start to /readyz: {seconds:.2f} s")
    yield container, url
    container.remove()


def test_migrate_runs_as_a_one_off_container(
    dockerd: PrivateDockerd, bridge_image: str, empty_pg_url: str, tmp_path: Path
) -> None:
    """`migrate` in a read-only, non-root container creates the schema, then exits 0."""
    container = BridgeContainer(
        dockerd, bridge_image, tmp_path, bridge_settings(1, empty_pg_url, "unused")
    )
    first = dockerd.docker("run", "--rm", *container.args("migrate"))
    assert "database migrated from empty to" in first.stdout
    second = dockerd.docker("run", "--rm", *container.args("migrate"))
    assert "database already at" in second.stdout
    engine = create_engine(empty_pg_url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()
    assert version in first.stdout


def test_bridge_container_ingests_observations_from_a_device(
    running: tuple[BridgeContainer, str], module_broker: Broker
) -> None:
    """What a camera publishes ends up in PostgreSQL, once per seq."""
    _container, url = running
    before = stored(url)
    device = f"cam-{uuid.uuid4().hex[:6]}"
    publish_all(
        module_broker.host,
        module_broker.port,
        (observation_message(device, s) for s in range(1, 41)),
    )
    wait_for(lambda: stored(url) == before + 40, 30, "40 observations stored")


def test_bridge_runs_as_non_root(running: tuple[BridgeContainer, str]) -> None:
    """Every process in the container, tini and the bridge, runs as uid 10001."""
    container, _ = running
    assert container.exec("id", "-u").stdout.strip() == str(BRIDGE_UID)
    listing = container.exec(
        "sh", "-c", "for p in /proc/[0-9]*; do echo $p $(tr '\\0' ' ' < $p/cmdline); done"
    ).stdout
    pids = {
        line.split()[0].split("/")[-1]: line
        for line in listing.splitlines()
        if "cultivai-bridge" in line or "tini" in line
    }
    assert "1" in pids and "tini" in pids["1"], listing
    assert any("cultivai-bridge run" in line and pid != "1" for pid, line in pids.items()), listing
    for pid in pids:
        status = container.exec("cat", f"/proc/{pid}/status").stdout
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        assert uid_line.split()[1:] == [str(BRIDGE_UID)] * 4, (pid, uid_line)


@pytest.mark.parametrize("path", ["/probe", "/opt/cultivai/probe", "/etc/cultivai/probe"])
def test_root_filesystem_is_read_only_and_the_bridge_still_works(
    running: tuple[BridgeContainer, str], module_broker: Broker, path: str
) -> None:
    """A write outside /tmp fails; the bridge goes on storing."""
    container, url = running
    done = container.exec("sh", "-c", f"echo x > {path}")
    assert done.returncode != 0
    assert "Read-only file system" in done.stderr
    assert container.exec("sh", "-c", "echo x > /tmp/probe").returncode == 0
    before = stored(url)
    device = f"cam-{uuid.uuid4().hex[:6]}"
    publish_all(
        module_broker.host,
        module_broker.port,
        (observation_message(device, s) for s in range(1, 6)),
    )
    wait_for(lambda: stored(url) == before + 5, 30, "5 more observations stored")


def test_healthcheck_reports_healthy(running: tuple[BridgeContainer, str]) -> None:
    """The image's HEALTHCHECK asks /healthz and docker marks the container healthy."""
    container, _ = running
    wait_for(lambda: container.state()["Health"]["Status"] == "healthy", 30, "healthy")


def test_image_metadata(dockerd: PrivateDockerd, bridge_image: str) -> None:
    """Non-root user, tini as entrypoint, a healthcheck, OCI labels."""
    config: dict[str, Any] = json.loads(
        dockerd.docker("image", "inspect", "--format", "{{json .Config}}", bridge_image).stdout
    )
    assert config["User"] == f"{BRIDGE_UID}:{BRIDGE_UID}"
    assert config["Entrypoint"] == ["/usr/bin/tini", "--", "cultivai-bridge"]
    assert config["Cmd"] == ["run"]
    assert "/healthz" in " ".join(config["Healthcheck"]["Test"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "cultivai-bridge"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"]


def test_sigterm_drains_exits_zero_and_loses_nothing(
    dockerd: PrivateDockerd,
    bridge_image: str,
    module_broker: Broker,
    pg_cluster: PgCluster,
    tmp_path: Path,
) -> None:
    """SIGTERM mid-stream: exit 0; a restarted bridge (same session) gets the rest, once."""
    url = fresh_database(pg_cluster)
    settings = bridge_settings(module_broker.port, url, f"drain-{uuid.uuid4().hex[:6]}")
    first = BridgeContainer(dockerd, bridge_image, tmp_path, settings)
    first.start()
    device = f"cam-{uuid.uuid4().hex[:6]}"
    total = 600
    publisher = threading.Thread(
        target=publish_all,
        args=(
            module_broker.host,
            module_broker.port,
            (observation_message(device, s) for s in range(1, total + 1)),
        ),
    )
    publisher.start()
    try:
        wait_for(lambda: stored(url) > 0, 30, "the first observations stored")
        dockerd.docker("kill", "--signal=TERM", first.name)
        exit_code = dockerd.docker("wait", first.name, timeout=60).stdout.strip()
    finally:
        publisher.join(60)
    assert exit_code == "0", first.logs()
    messages = [r.get("msg") for r in first.log_records()]
    assert "stop requested" in messages and "bridge stopped" in messages, first.logs()
    after_stop = stored(url)
    first.remove()
    second = BridgeContainer(dockerd, bridge_image, tmp_path, settings)
    try:
        second.start()
        wait_for(lambda: stored(url) == total, 60, f"all {total} observations stored")
    finally:
        second.remove()
    print(f"\nSIGTERM drain: {after_stop} stored before the stop, {total} after the restart")
