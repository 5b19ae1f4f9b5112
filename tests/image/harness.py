"""Boot the appliance image in QEMU: user-mode networking, forwards on 127.0.0.1, serial log.

A `Machine` runs one qcow2 overlay over the built image. Files go onto its boot
partition and come back off it without loop devices: the FAT partition is read and
written through QEMU's raw driver with an offset (qemu-img convert), and the root file
system is checked with e2fsck on a sparse copy of its partition.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QEMU = "qemu-system-x86_64"
SECTOR = 512


class BootError(RuntimeError):
    """The guest did not reach the state a test waited for; the message has the log tail."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Partition:
    """A partition's place in the disk, in bytes."""

    offset: int
    size: int


def partitions(raw_image: Path) -> list[Partition]:
    """The partitions of a raw disk image (sfdisk reads the table from the file)."""
    out = subprocess.run(
        ["sfdisk", "--json", str(raw_image)], check=True, capture_output=True, text=True
    )
    table = json.loads(out.stdout)["partitiontable"]
    return [Partition(p["start"] * SECTOR, p["size"] * SECTOR) for p in table["partitions"]]


def _raw_opts(disk: Path, part: Partition) -> str:
    fmt = "qcow2" if disk.suffix == ".qcow2" else "raw"
    return (
        f"driver=raw,offset={part.offset},size={part.size},"
        f"file.driver={fmt},file.file.driver=file,file.file.filename={disk}"
    )


def extract(disk: Path, part: Partition, dest: Path) -> Path:
    """Copy one partition out of a (qcow2 or raw) disk into a sparse raw file."""
    dest.unlink(missing_ok=True)
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-U",
            "--image-opts",
            _raw_opts(disk, part),
            "-O",
            "raw",
            str(dest),
        ],
        check=True,
        capture_output=True,
    )
    return dest


def put_back(disk: Path, part: Partition, src: Path) -> None:
    """Write a partition image into the disk at the partition's place."""
    subprocess.run(
        [
            "qemu-img",
            "convert",
            "-n",
            "-f",
            "raw",
            str(src),
            "--target-image-opts",
            _raw_opts(disk, part),
        ],
        check=True,
        capture_output=True,
    )


def fat_write(fat: Path, name: str, data: bytes) -> None:
    """Put one file on a FAT image (mtools)."""
    tmp = fat.with_name(name)
    tmp.write_bytes(data)
    subprocess.run(["mcopy", "-o", "-i", str(fat), str(tmp), f"::{name}"], check=True)
    tmp.unlink()


def fat_files(fat: Path) -> dict[str, bytes]:
    """Every file in the FAT image's top folder, with its contents."""
    out = subprocess.run(
        ["mdir", "-b", "-i", str(fat), "::"], capture_output=True, text=True, check=False
    )
    files = {}
    for line in out.stdout.splitlines():
        name = line.strip().removeprefix("::/")
        if not name or name.endswith("/"):
            continue
        data = subprocess.run(
            ["mtype", "-i", str(fat), f"::{name}"], capture_output=True, check=True
        ).stdout
        files[name] = data
    return files


@dataclass
class Machine:
    """One appliance VM over a qcow2 overlay; started, cut and started again by tests."""

    base: Path
    workdir: Path
    accel: str = "tcg"
    memory_mb: int = 1024
    ssh_key: Path | None = None
    ssh_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    boots: int = 0
    proc: subprocess.Popen[bytes] | None = None
    drive: str | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.disk = self.workdir / "disk.qcow2"
        self.parts = partitions(self.base)

    def create(self) -> None:
        """A fresh overlay over the built image: the SD card as flashed."""
        self.disk.unlink(missing_ok=True)
        subprocess.run(
            [
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                str(self.base),
                str(self.disk),
            ],
            check=True,
        )

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"serial-{self.boots}.log"

    def command(self) -> list[str]:
        """The QEMU command line: user networking, forwards bound to 127.0.0.1 only."""
        drive = self.drive or f"file={self.disk},format=qcow2,if=virtio,cache=writeback"
        accel = {
            "kvm": ["-accel", "kvm", "-cpu", "host"],
            "kvm-qemu64": ["-accel", "kvm"],
        }.get(self.accel, ["-accel", "tcg,thread=multi", "-cpu", "max"])
        return [
            QEMU,
            *accel,
            "-machine",
            "pc",
            "-m",
            str(self.memory_mb),
            "-smp",
            "2",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-user-config",
            "-nodefaults",
            "-serial",
            f"file:{self.serial_log}",
            "-drive",
            drive,
            "-netdev",
            f"user,id=n0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,"
            f"hostfwd=tcp:127.0.0.1:{self.web_port}-:8080",
            "-device",
            "virtio-net-pci,netdev=n0",
            "-device",
            "virtio-rng-pci",
        ]

    def start(self) -> None:
        """Power on."""
        self.boots += 1
        with (self.workdir / "qemu.err").open("ab") as err:
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=err)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cut_power(self) -> None:
        """Pull the plug: SIGKILL QEMU, nothing gets to shut down."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.proc = None

    def shutdown(self, timeout: float = 120) -> None:
        """A clean power-off from inside; the plug is pulled if it takes too long."""
        if not self.running():
            return
        self.ssh("systemctl poweroff", check=False, timeout=20)
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.cut_power()
        self.proc = None

    def serial(self) -> str:
        try:
            return self.serial_log.read_text(errors="replace")
        except OSError:
            return ""

    def wait_serial(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the serial console shows `pattern`."""
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.serial())
            if m:
                return m
            if not self.running():
                raise BootError(f"QEMU exited waiting for {pattern!r}:\n{self.serial()[-3000:]}")
            time.sleep(0.5)
        raise BootError(f"no {pattern!r} on the console in {timeout} s:\n{self.serial()[-3000:]}")

    def ssh(
        self, command: str, check: bool = True, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the guest as root over the forwarded SSH port."""
        assert self.ssh_key is not None
        cmd = [
            "ssh",
            "-q",
            "-i",
            str(self.ssh_key),
            "-p",
            str(self.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "root@127.0.0.1",
            command,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise BootError(f"ssh {command!r}: exit {out.returncode}\n{out.stdout}\n{out.stderr}")
        return out

    def wait_ssh(self, timeout: float) -> float:
        """Wait until SSH answers; returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise BootError(f"QEMU exited before SSH answered:\n{self.serial()[-3000:]}")
            try:
                if self.ssh("true", check=False, timeout=20).returncode == 0:
                    return time.monotonic() - t0
            except subprocess.TimeoutExpired:
                pass
            time.sleep(2)
        raise BootError(f"SSH did not answer in {timeout} s:\n{self.serial()[-3000:]}")

    def push(self, local: Path, remote: str) -> None:
        """Copy a folder into the guest (tar over SSH)."""
        assert self.ssh_key is not None
        tar = subprocess.Popen(["tar", "-C", str(local), "-cf", "-", "."], stdout=subprocess.PIPE)
        ssh = [
            "ssh",
            "-q",
            "-i",
            str(self.ssh_key),
            "-p",
            str(self.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "root@127.0.0.1",
            f"mkdir -p {remote} && tar -C {remote} -xf -",
        ]
        subprocess.run(ssh, stdin=tar.stdout, check=True, timeout=900)
        tar.wait()

    def write_boot_file(self, name: str, data: bytes) -> None:
        """Put a file on the boot partition (the grower with an SD card reader)."""
        fat = extract(self.disk, self.parts[0], self.workdir / "boot.vfat")
        fat_write(fat, name, data)
        put_back(self.disk, self.parts[0], fat)
        fat.unlink()

    def boot_files(self) -> dict[str, bytes]:
        """What is on the boot partition now (the machine must be off)."""
        fat = extract(self.disk, self.parts[0], self.workdir / "boot.vfat")
        try:
            return fat_files(fat)
        finally:
            fat.unlink()

    def fsck_root(self) -> subprocess.CompletedProcess[str]:
        """e2fsck -fn of the root file system as it is on the disk now (machine off).

        The journal is replayed first on the copy (`e2fsck -E journal_only`), as the
        kernel does at mount, then the whole file system is checked read-only.
        """
        raw = extract(self.disk, self.parts[1], self.workdir / "root.ext4")
        try:
            subprocess.run(
                ["e2fsck", "-E", "journal_only", "-y", str(raw)],
                capture_output=True,
                text=True,
                check=False,
            )
            return subprocess.run(
                ["e2fsck", "-f", "-n", str(raw)], capture_output=True, text=True, check=False
            )
        finally:
            raw.unlink()


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cultivai" / "image"


def detect_accel(base: Path, workdir: Path) -> str:
    """'kvm' when a stock kernel really boots under it here, else 'tcg' (cached per host).

    /dev/kvm can be a paravirtual variant on which the Debian kernel crashes, so its
    presence proves nothing: boot the image to the login prompt once and see.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    key = hashlib.sha256(
        (os.uname().release + os.uname().version + base.name).encode()
        + Path("/proc/cpuinfo").read_bytes()[:4096]
    ).hexdigest()[:16]
    cached = cache_root() / f"accel-{key}.json"
    if cached.exists():
        return str(json.loads(cached.read_text())["accel"])
    accel = "tcg"
    for candidate in ("kvm", "kvm-qemu64"):
        probe = Machine(base, workdir / f"probe-{candidate}", accel=candidate)
        probe.create()
        probe.start()
        try:
            probe.wait_serial(r"login:", timeout=60)
            accel = candidate
        except BootError:
            continue
        finally:
            probe.cut_power()
            shutil.rmtree(probe.workdir, ignore_errors=True)
        break
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"accel": accel}))
    return accel


# Run inside the guest with its Python: the store's invariants after a power cut.
STORE_CHECK = r"""
import json, os, sqlite3
root = "/var/lib/cultivai"
db = sqlite3.connect(os.path.join(root, "edge.sqlite3"), timeout=30)
out = {"integrity": db.execute("PRAGMA integrity_check").fetchone()[0]}
seqs = [r[0] for r in db.execute("SELECT seq FROM observations ORDER BY seq")]
out["observations"] = len(seqs)
out["max_seq"] = seqs[-1] if seqs else 0
out["contiguous"] = seqs == list(range(seqs[0], seqs[-1] + 1)) if seqs else True
missing = []
for seq, img, ovl in db.execute("SELECT seq, image_path, overlay_path FROM observations"):
    for p in (img, ovl):
        if p and not os.path.isfile(p if os.path.isabs(p) else os.path.join(root, p)):
            missing.append(seq)
out["missing_photos"] = missing
out["outbox"] = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
out["outbox_orphans"] = db.execute(
    "SELECT COUNT(*) FROM outbox o WHERE o.seq IS NOT NULL AND NOT EXISTS "
    "(SELECT 1 FROM observations b WHERE b.seq = o.seq)").fetchone()[0]
row = db.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
out["counter"] = row[0] if row else None
print(json.dumps(out))
"""


def store_check(machine: Machine) -> dict[str, object]:
    """The store's invariants, read in the guest."""
    out = machine.ssh(f"python3 - <<'EOF'\n{STORE_CHECK}\nEOF", timeout=120)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))
