"""Power cuts that also lose the writes the guest had not flushed (`make image-test` only).

The disk is served by `VolatileDisk`: writes stay in a volatile cache until the guest
flushes, and at each cut a random half of the unflushed sector writes is lost. ext4's
journal and SQLite's fsyncs must make that invisible: fsck clean, integrity ok, seq
contiguous, nothing committed lost.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.image.conftest import campaign, provision_file, record
from tests.image.harness import Machine, store_check
from tests.image.test_appliance import seqs
from tests.image.volatile_disk import VolatileDisk
from tests.mqtt_broker import Broker
from tests.mqtt_client import Recorder

pytestmark = [pytest.mark.image, pytest.mark.timeout(7200)]
DEVICE = "img-cam-2"


@pytest.fixture(scope="module")
def volatile_device(
    appliance_image: Path,
    accel: str,
    ssh_key: Path,
    broker: Broker,
    recorder: Recorder,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Machine, VolatileDisk]]:
    """A device whose disk loses unflushed writes at a power cut, booted to its first capture."""
    if not campaign():
        pytest.skip("the unflushed-writes campaign runs in `make image-test`")
    work = tmp_path_factory.mktemp("volatile")
    raw = work / "disk.raw"
    subprocess.run(["cp", "--sparse=always", str(appliance_image), str(raw)], check=True)
    m = Machine(appliance_image, work, accel=accel, ssh_key=ssh_key)
    m.disk = raw
    m.write_boot_file(
        "cultivai.yaml", yaml.safe_dump(provision_file(ssh_key, broker.port, DEVICE)).encode()
    )
    disk = VolatileDisk(raw, work / "nbd.sock", seed=2024)
    m.drive = disk.drive
    m.start()
    try:
        m.wait_ssh(900)
        assert recorder.wait_for(lambda: len(seqs(recorder, DEVICE)) > 0, timeout=600)
        yield m, disk
    finally:
        m.cut_power()
        disk.close()
        if os.environ.get("CULTIVAI_IMAGE_KEEP") != "1":
            shutil.rmtree(work, ignore_errors=True)


def test_power_cuts_losing_unflushed_writes_leave_a_clean_device(
    volatile_device: tuple[Machine, VolatileDisk], recorder: Recorder
) -> None:
    m, disk = volatile_device
    cuts = int(os.environ.get("CULTIVAI_UNFLUSHED_CUTS", "5"))
    rng = random.Random(77)
    clean = 0
    for i in range(cuts):
        have = len(seqs(recorder, DEVICE))
        assert recorder.wait_for(lambda h=have: len(seqs(recorder, DEVICE)) > h, timeout=300)
        time.sleep(rng.uniform(0, 5))
        m.cut_power()
        kept, dropped = disk.power_cut(keep=0.5)
        print(f"cut {i}: kept {kept} and dropped {dropped} unflushed sector writes")
        fsck = m.fsck_root()
        assert fsck.returncode == 0, f"cut {i}: e2fsck -fn after journal replay:\n{fsck.stdout}"
        m.start()
        m.wait_ssh(900)
        state = store_check(m)
        assert state["integrity"] == "ok", (i, state)
        assert state["contiguous"], (i, state)
        assert state["missing_photos"] == [], (i, state)
        assert state["outbox_orphans"] == 0, (i, state)
        top = int(state["max_seq"])
        assert recorder.wait_for(lambda t=top: seqs(recorder, DEVICE)[-1:] >= [t], timeout=300)
        got = seqs(recorder, DEVICE)
        assert got == list(range(1, got[-1] + 1)), f"cut {i}: gap in delivered seqs"
        clean += 1
    record(f"unflushed_power_cuts_clean_of_{cuts}", clean)
    record("unflushed_sector_writes_dropped", disk.dropped)
