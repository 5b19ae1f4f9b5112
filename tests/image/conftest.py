"""Fixtures of the image tests: the built image (built when not cached), a broker, a VM."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.image.harness import REPO, Machine, cache_root, detect_accel
from tests.mqtt_broker import Broker
from tests.mqtt_client import Recorder

NEEDS = ("qemu-system-x86_64", "qemu-img", "debootstrap", "mcopy", "sfdisk", "e2fsck", "ssh")


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the image tests build and inspect disk images as root"
    missing = [n for n in NEEDS if shutil.which(n) is None and not Path(f"/usr/sbin/{n}").exists()]
    if missing:
        return f"missing programs: {', '.join(missing)} (make system-deps)"
    return None


def campaign() -> bool:
    """True for `make image-test` (the whole campaign), False for the short set."""
    return os.environ.get("CULTIVAI_IMAGE_CAMPAIGN", "") == "full"


@pytest.fixture(scope="session")
def appliance_image() -> Path:
    """The amd64 appliance image: `make image` (cached under ~/.cache/cultivai/image)."""
    why = _unavailable()
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(why)
        pytest.skip(why)
    given = os.environ.get("CULTIVAI_IMAGE")
    if given:
        return Path(given).resolve()
    t0 = time.monotonic()
    log = cache_root() / "last-build.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        done = subprocess.run(
            ["make", "--no-print-directory", "image", "ARCH=amd64"],
            cwd=REPO,
            stdout=f,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        pytest.fail(f"make image failed; see {log}:\n{log.read_text()[-3000:]}")
    record("build_s", round(time.monotonic() - t0, 1))
    return REPO / "dist/cultivai-edge-amd64.img"


def record(name: str, value: object) -> None:
    """Keep a figure for the README in the cache folder (results.json) and print it."""
    path = cache_root() / "results.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[name] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"image figure: {name} = {value}")


@pytest.fixture(scope="session")
def accel(appliance_image: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """KVM if the image really boots under it here, else TCG."""
    found = detect_accel(appliance_image, tmp_path_factory.mktemp("accel"))
    record("accel", found)
    return found


@pytest.fixture(scope="session")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh ed25519 key pair; the public half goes into cultivai.yaml."""
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A Mosquitto on the host's 127.0.0.1; the guest reaches it as 10.0.2.2."""
    b = Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def recorder(broker: Broker) -> Iterator[Recorder]:
    """Every observation the device publishes, as the broker delivers it."""
    r = Recorder(broker.host, broker.port, ["cultivai/v1/+/observation"], client_id="image-rec")
    yield r
    r.close()


def provision_file(ssh_key: Path, broker_port: int, device_id: str = "img-cam-1") -> dict:
    """The cultivai.yaml a test puts on the boot partition."""
    return {
        "device": {"id": device_id, "site": "test-farm", "room": "veg"},
        "broker": {"host": "10.0.2.2", "port": broker_port, "password": "broker-secret-9f3"},
        "ssh": {"authorized_keys": [ssh_key.with_suffix(".pub").read_text().strip()]},
        "web": {"password": "page-secret-71c"},
        "wifi": {"ssid": "grow-room", "psk": "wifi-secret-44a", "country": "NL"},
        "edge": {
            "camera": {"backend": "synthetic"},
            "schedule": {"interval_s": 5},
            "storage": {"min_free_mb": 0},
            "logging": {"format": "text"},
        },
    }


SECRETS = ("broker-secret-9f3", "page-secret-71c", "wifi-secret-44a")


@pytest.fixture(scope="module")
def device(
    appliance_image: Path,
    accel: str,
    ssh_key: Path,
    broker: Broker,
    recorder: Recorder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Machine]:
    """A flashed card with a generated cultivai.yaml, booted once to its first observation."""
    m = Machine(appliance_image, tmp_path_factory.mktemp("vm"), accel=accel, ssh_key=ssh_key)
    m.create()
    text = yaml.safe_dump(provision_file(ssh_key, broker.port))
    m.write_boot_file("cultivai.yaml", text.encode())
    t0 = time.monotonic()
    m.start()
    try:
        m.boot_to_ssh_s = m.wait_ssh(900)  # type: ignore[attr-defined]
        if not recorder.wait_for(lambda: len(recorder.on("/observation")) > 0, timeout=600):
            raise AssertionError(
                "no observation reached the broker; agent log:\n"
                + m.ssh(
                    "tail -50 /var/log/cultivai/edge.log; journalctl -b -n 50", check=False
                ).stdout
            )
        first = time.monotonic() - t0
        m.first_observation_s = first  # type: ignore[attr-defined]
        record(f"boot_to_first_observation_{accel}_s", round(first, 1))
        record(f"boot_to_ssh_{accel}_s", round(m.boot_to_ssh_s, 1))  # type: ignore[attr-defined]
        yield m
    finally:
        m.cut_power()
        if os.environ.get("CULTIVAI_IMAGE_KEEP") != "1":
            m.disk.unlink(missing_ok=True)
