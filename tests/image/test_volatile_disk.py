"""The volatile NBD disk itself, driven by QEMU's own client (qemu-io): no VM needed."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.image.volatile_disk import VolatileDisk

pytestmark = pytest.mark.skipif(shutil.which("qemu-io") is None, reason="qemu-io not installed")


def qemu_io(disk: VolatileDisk, *commands: str) -> str:
    args = ["qemu-io", "-t", "writeback", "-f", "raw", f"nbd+unix:///?socket={disk.socket_path}"]
    for c in commands:
        args += ["-c", c]
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def qemu_io_cut(disk: VolatileDisk, done: Callable[[], bool], *commands: str) -> None:
    """Run commands, then kill qemu-io with SIGKILL: a clean exit would flush the disk."""
    args = ["qemu-io", "-t", "writeback", "-f", "raw", f"nbd+unix:///?socket={disk.socket_path}"]
    for c in (*commands, "sleep 60000"):
        args += ["-c", c]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not done():
            assert time.monotonic() < deadline, "qemu-io did not get the writes through"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[VolatileDisk]:
    image = tmp_path / "disk.raw"
    image.write_bytes(b"\0" * (1 << 20))
    d = VolatileDisk(image, tmp_path / "nbd.sock", seed=1)
    yield d
    d.close()


def test_unflushed_writes_are_read_back_but_not_on_the_file(disk: VolatileDisk) -> None:
    qemu_io_cut(disk, lambda: len(disk.writes) == 16, "write -P 0xab 4096 8192")
    assert disk.image.read_bytes()[4096:12288] == b"\0" * 8192
    assert "Pattern verification failed" not in qemu_io_cut_read(disk)


def qemu_io_cut_read(disk: VolatileDisk) -> str:
    """Read back through the server (sees the cache) before the cut drops it."""
    args = ["qemu-io", "-f", "raw", "-r", f"nbd+unix:///?socket={disk.socket_path}"]
    args += ["-c", "read -P 0xab 4096 8192"]
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=60).stdout


def test_a_flush_makes_writes_durable(disk: VolatileDisk) -> None:
    qemu_io(disk, "write -P 0xcd 0 4096", "flush")
    assert disk.image.read_bytes()[:4096] == b"\xcd" * 4096
    assert disk.power_cut(keep=0.0) == (0, 0)
    assert disk.image.read_bytes()[:4096] == b"\xcd" * 4096


def test_fua_writes_are_durable_without_a_flush(disk: VolatileDisk) -> None:
    qemu_io(disk, "write -f -P 0x11 8192 512")
    assert disk.image.read_bytes()[8192:8704] == b"\x11" * 512


def test_a_power_cut_drops_unflushed_writes(disk: VolatileDisk) -> None:
    qemu_io_cut(disk, lambda: len(disk.writes) == 128, "write -P 0x22 65536 65536")
    kept, dropped = disk.power_cut(keep=0.0)
    assert (kept, dropped) == (0, 128)
    assert disk.image.read_bytes()[65536:131072] == b"\0" * 65536
    out = qemu_io(disk, "read -P 0 65536 65536")
    assert "Pattern verification failed" not in out


def test_a_torn_cut_keeps_some_sectors_and_drops_others(disk: VolatileDisk) -> None:
    qemu_io_cut(disk, lambda: len(disk.writes) == 128, "write -P 0x33 0 65536")
    kept, dropped = disk.power_cut(keep=0.5)
    assert kept > 0 and dropped > 0
    data = disk.image.read_bytes()[:65536]
    sectors = {data[i : i + 512] for i in range(0, 65536, 512)}
    assert sectors == {b"\x33" * 512, b"\0" * 512}


def test_unaligned_writes_merge_with_the_sector(disk: VolatileDisk) -> None:
    qemu_io(disk, "write -P 0x44 0 512", "flush", "write -P 0x55 100 10", "flush")
    data = disk.image.read_bytes()[:512]
    assert data[:100] == b"\x44" * 100 and data[100:110] == b"\x55" * 10
    assert data[110:] == b"\x44" * 402
