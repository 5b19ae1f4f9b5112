"""Build the appliance disk image: a Debian bookworm root from debootstrap plus the appliance layer.

Usage (as root): ``python3 image/build.py --arch amd64 --wheel dist/cultivai_edge-*.whl``.

No loop devices are needed: the root file system is made with ``mkfs.ext4 -d``, the
config partition with ``mkfs.vfat`` and mtools, the partition table with sfdisk on the
image file, and (amd64) GRUB's boot sector and core image are written with dd.

Two caches live under ``${XDG_CACHE_HOME:-~/.cache}/cultivai/image``: the debootstrap
tree (keyed by a hash of the base recipe) and the finished image (keyed by the base hash,
the wheel and the appliance layer), so a second build with nothing changed is a copy.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SUITE = "bookworm"
# Bumped by hand when the base recipe changes in a way the hash below cannot see.
BASE_RECIPE_REVISION = "1"

COMMON_PACKAGES = [
    "systemd-sysv",
    "udev",
    "dbus",
    "kmod",
    "initramfs-tools",
    "python3",
    "python3-venv",
    "openssh-server",
    "dosfstools",
    "e2fsprogs",
    "sqlite3",
    "ca-certificates",
    "iproute2",
    "logrotate",
    "curl",
    "wpasupplicant",
    "systemd-timesyncd",
    "libglib2.0-0",
    "systemd-resolved",
    "iputils-ping",
    "less",
]
ARCH_PACKAGES = {
    "amd64": ["linux-image-amd64"],
    "arm64": ["linux-image-arm64"],
}
# A short module list keeps the initramfs small and fast to build under emulation
# (MODULES=most did not finish in 12 minutes on arm64 through qemu-user).
INITRAMFS_MODULES = [
    "virtio_pci",
    "virtio_blk",
    "virtio_scsi",
    "virtio_net",
    "ext4",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "sd_mod",
    "ahci",
    "nvme",
    "usb_storage",
    "xhci_pci",
    "mmc_block",
    "sdhci_pci",
]
PY_PLATFORMS = {
    "amd64": [
        "manylinux_2_36_x86_64",
        "manylinux_2_28_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
        "linux_x86_64",
    ],
    "arm64": [
        "manylinux_2_36_aarch64",
        "manylinux_2_28_aarch64",
        "manylinux_2_17_aarch64",
        "manylinux2014_aarch64",
        "linux_aarch64",
    ],
}
BOOT_LABEL = "CULTIVAI"
ROOT_LABEL = "cultivai-root"
BOOT_MIB = 64


class BuildError(RuntimeError):
    """The image could not be built; the message says which step and why."""


@dataclass(frozen=True)
class Layout:
    """Where each partition sits in the disk image, in 512-byte sectors."""

    boot_start: int
    boot_sectors: int
    root_start: int
    root_sectors: int

    @property
    def total_sectors(self) -> int:
        return self.root_start + self.root_sectors + 2048


def cache_dir() -> Path:
    """The cache folder: ${XDG_CACHE_HOME:-~/.cache}/cultivai/image."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cultivai" / "image"


def parse_sources(text: str, deb822: bool) -> list[tuple[str, list[str]]]:
    """(URI, suites) pairs of the `deb` entries of one apt sources file."""
    entries: list[tuple[str, list[str]]] = []
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line:
                    continue
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split()))
    else:
        for line in text.splitlines():
            line = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                entries.append((line[1], [line[2]]))
    return entries


def debian_mirror(etc_apt: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The mirror the machine's apt sources name for `suite` (not its -security archive)."""
    entries: list[tuple[str, list[str]]] = []
    main = etc_apt / "sources.list"
    if main.is_file():
        entries += parse_sources(main.read_text(), deb822=False)
    for f in sorted((etc_apt / "sources.list.d").glob("*")):
        if f.suffix == ".sources":
            entries += parse_sources(f.read_text(), deb822=True)
        elif f.suffix == ".list":
            entries += parse_sources(f.read_text(), deb822=False)
    for uri, suites in entries:
        if suite in suites and "security" not in uri:
            return uri.rstrip("/")
    raise BuildError(
        f"no apt source for Debian {suite} in {etc_apt}/sources.list or sources.list.d/; "
        "add one or pass --mirror URL"
    )


def run(cmd: list[str], **kw: object) -> None:
    """Run one build step; a failure names the command."""
    print("+", " ".join(cmd), flush=True)
    try:
        subprocess.run(cmd, check=True, **kw)  # type: ignore[call-overload]
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"step failed (exit {exc.returncode}): {' '.join(cmd)}") from exc


def hash_files(paths: list[Path]) -> str:
    """A hash over the names and contents of files (folders walked in order)."""
    h = hashlib.sha256()
    for p in paths:
        files = sorted(x for x in p.rglob("*") if x.is_file()) if p.is_dir() else [p]
        for f in files:
            h.update(
                str(f.relative_to(HERE.parent) if f.is_relative_to(HERE.parent) else f).encode()
            )
            h.update(f.read_bytes())
    return h.hexdigest()


def base_key(arch: str, mirror: str) -> str:
    """The debootstrap tree's cache key: everything that shapes the base."""
    recipe = {
        "rev": BASE_RECIPE_REVISION,
        "suite": SUITE,
        "arch": arch,
        "mirror": mirror,
        "packages": COMMON_PACKAGES + ARCH_PACKAGES[arch],
        "modules": INITRAMFS_MODULES,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def build_base(arch: str, mirror: str, dest: Path) -> None:
    """debootstrap a bookworm tree with a kernel and a small initramfs into `dest`."""
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # conf.d is not a package conffile, so debootstrap's dpkg never asks about it; the
    # module list goes in after debootstrap and the initramfs is rebuilt once.
    conf = tmp / "etc/initramfs-tools/conf.d"
    conf.mkdir(parents=True)
    (conf / "cultivai.conf").write_text("MODULES=list\nCOMPRESS=zstd\n")
    pkgs = ",".join(COMMON_PACKAGES + ARCH_PACKAGES[arch] + ["zstd"])
    run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--arch={arch}",
            f"--include={pkgs}",
            SUITE,
            str(tmp),
            mirror,
        ]
    )
    (tmp / "etc/apt/sources.list").write_text(
        f"deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n"
    )
    (tmp / "etc/initramfs-tools/modules").write_text("\n".join(INITRAMFS_MODULES) + "\n")
    with Chroot(tmp):
        run(["chroot", str(tmp), "update-initramfs", "-u", "-k", "all"])
        run(["chroot", str(tmp), "apt-get", "clean"])
    tmp.rename(dest)


def ensure_base(arch: str, mirror: str) -> Path:
    """The cached debootstrap tree, built when missing."""
    dest = cache_dir() / f"base-{arch}-{base_key(arch, mirror)}"
    if not (dest / "etc/os-release").exists():
        build_base(arch, mirror, dest)
    return dest


def requirements(wheel: Path) -> str:
    """The wheel's Requires-Dist lines: what its dependencies' wheelhouse depends on."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    return "\n".join(sorted(line for line in lines if line.startswith("Requires-Dist:")))


def ensure_wheelhouse(arch: str, wheel: Path, extras: str) -> Path:
    """Wheels of the agent's dependencies for the device's platform (Python 3.11)."""
    key = hashlib.sha256((requirements(wheel) + arch + extras).encode()).hexdigest()[:16]
    dest = cache_dir() / f"wheels-{arch}-{key}"
    if (dest / ".complete").exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--only-binary=:all:",
        "--python-version",
        "3.11",
        "--implementation",
        "cp",
        "--abi",
        "cp311",
        "--abi",
        "abi3",
        "--abi",
        "none",
        "-d",
        str(dest),
    ]
    for plat in PY_PLATFORMS[arch]:
        cmd += ["--platform", plat]
    run([*cmd, f"{wheel}[{extras}]"])
    for own in dest.glob("cultivai_edge-*.whl"):
        own.unlink()  # the agent's own wheel is installed from the build's copy
    (dest / ".complete").write_text("ok\n")
    return dest


class Chroot:
    """A tree with /proc, /sys and /dev mounted for running its programs."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: list[Path] = []

    def __enter__(self) -> Chroot:
        for src, opts in (
            ("proc", ["-t", "proc"]),
            ("sys", ["-t", "sysfs"]),
            ("/dev", ["--bind"]),
            ("/dev/pts", ["--bind"]),
        ):
            target = self.root / src.lstrip("/")
            target.mkdir(parents=True, exist_ok=True)
            run(["mount", *opts, src, str(target)])
            self.mounts.append(target)
        return self

    def __exit__(self, *exc: object) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)


def image_key(base: Path, wheel: Path, arch: str) -> str:
    """The finished image's cache key: base, wheel, appliance layer and this script."""
    h = hashlib.sha256(base.name.encode() + arch.encode())
    h.update(wheel.read_bytes())
    h.update(
        hash_files(
            [
                HERE / "appliance",
                Path(__file__),
                HERE.parent / "ansible/roles/edge_device/templates",
            ]
        ).encode()
    )
    return h.hexdigest()[:16]


def layout_for(root_bytes: int) -> Layout:
    """Partition layout: 1 MiB gap (GRUB core), a FAT config partition, then the root."""
    boot_start = 2048
    boot_sectors = BOOT_MIB * 2048
    root_start = boot_start + boot_sectors
    return Layout(boot_start, boot_sectors, root_start, root_bytes // 512)


def make_boot_partition(path: Path, readme: Path) -> None:
    """The small FAT partition that receives cultivai.yaml."""
    path.unlink(missing_ok=True)
    run(["mkfs.vfat", "-F", "16", "-n", BOOT_LABEL, "-C", str(path), str(BOOT_MIB * 1024)])
    run(["mcopy", "-i", str(path), str(readme), "::README.txt"])
    example = HERE / "appliance/cultivai.yaml.example"
    run(["mcopy", "-i", str(path), str(example), "::cultivai.yaml.example"])


def dir_bytes(tree: Path) -> int:
    """Disk use of a tree, bytes."""
    out = subprocess.run(["du", "-sxb", str(tree)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


def install_grub_bios(disk: Path) -> None:
    """GRUB for BIOS without grub-install: boot.img in the MBR and core.img in the gap."""
    grub = Path("/usr/lib/grub/i386-pc")
    if not grub.is_dir():
        raise BuildError("GRUB for BIOS is missing: apt-get install grub-pc-bin")
    core = disk.with_suffix(".core")
    run(
        [
            "grub-mkimage",
            "-O",
            "i386-pc",
            "-o",
            str(core),
            "-p",
            "(hd0,msdos2)/boot/grub",
            "biosdisk",
            "part_msdos",
            "ext2",
            "normal",
            "linux",
            "search",
            "configfile",
            "echo",
            "test",
            "serial",
            "terminal",
        ]
    )
    if core.stat().st_size > (2048 - 1) * 512:
        raise BuildError("GRUB core image does not fit in the 1 MiB gap")
    with disk.open("r+b") as d, (grub / "boot.img").open("rb") as b:
        d.write(b.read(440))  # boot code only: keep the disk signature and table
        d.seek(512)
        d.write(core.read_bytes())
    core.unlink()


def grub_cfg(kernel: str, initrd: str) -> str:
    """grub.cfg of the appliance: serial and screen console, root by label."""
    return f"""serial --unit=0 --speed=115200
terminal_input console serial
terminal_output console serial
set timeout=1
menuentry "CultivAI Edge" {{
  linux /boot/{kernel} root=LABEL={ROOT_LABEL} ro console=tty0 console=ttyS0,115200 quiet
  initrd /boot/{initrd}
}}
"""


def assemble(arch: str, tree: Path, out: Path, workdir: Path) -> None:
    """Make the file systems from `tree` and put them in one partitioned disk image."""
    boot = workdir / "boot.vfat"
    make_boot_partition(boot, HERE / "appliance/boot-README.txt")
    if arch == "amd64":
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        initrds = sorted((tree / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise BuildError("no kernel or initramfs in the tree's /boot")
        (tree / "boot/grub").mkdir(parents=True, exist_ok=True)
        (tree / "boot/grub/grub.cfg").write_text(grub_cfg(kernels[-1].name, initrds[-1].name))
    else:
        # No firmware bootloader for arm64 here: boards boot through pi-gen or L4T, and
        # `qemu-system-aarch64 -M virt` boots the kernel and initramfs kept beside it.
        for pattern, suffix in (("vmlinuz-*", ".vmlinuz"), ("initrd.img-*", ".initrd")):
            found = sorted((tree / "boot").glob(pattern))
            if not found:
                raise BuildError(f"no {pattern} in the tree's /boot")
            shutil.copy2(found[-1], out.with_suffix(suffix))
    used = dir_bytes(tree)
    root_bytes = ((used * 14 // 10 + 768 * 2**20) // 2**20 + 1) * 2**20
    root = workdir / "root.ext4"
    root.unlink(missing_ok=True)
    # Each mount is journalled; orphan_file and metadata_csum_seed are what bookworm uses.
    run(
        [
            "mkfs.ext4",
            "-q",
            "-L",
            ROOT_LABEL,
            "-d",
            str(tree),
            "-E",
            "root_owner=0:0",
            str(root),
            f"{root_bytes // 1024}k",
        ]
    )
    lay = layout_for(root_bytes)
    disk = out.with_name(out.name + ".tmp")
    disk.unlink(missing_ok=True)
    with disk.open("wb") as f:
        f.truncate(lay.total_sectors * 512)
    table = (
        "label: dos\n"
        f"start={lay.boot_start}, size={lay.boot_sectors}, type=e, bootable\n"
        f"start={lay.root_start}, size={lay.root_sectors}, type=83\n"
    )
    run(["sfdisk", "--quiet", str(disk)], input=table.encode())
    for part, start in ((boot, lay.boot_start), (root, lay.root_start)):
        run(
            [
                "dd",
                f"if={part}",
                f"of={disk}",
                "bs=1M",
                f"seek={start * 512}",
                "oflag=seek_bytes",
                "conv=notrunc,sparse",
                "status=none",
            ]
        )
        part.unlink()
    if arch == "amd64":
        install_grub_bios(disk)
    disk.rename(out)


def apply_appliance(tree: Path, wheel: Path, wheelhouse: Path, arch: str) -> None:
    """The appliance layer (the script the pi-gen stage and the Jetson script run too),
    then what only the Debian image has: fstab, systemd-networkd, GRUB's modules."""
    shutil.copy2(wheel, tree / "tmp" / wheel.name)
    wh = tree / "tmp/wheelhouse"
    shutil.copytree(wheelhouse, wh, dirs_exist_ok=True)
    env = dict(os.environ, PYTHON=sys.executable)
    with Chroot(tree):
        run(
            [
                "bash",
                str(HERE / "appliance/apply.sh"),
                str(tree),
                f"/tmp/{wheel.name}",
                "/tmp/wheelhouse",
            ],
            env=env,
        )
        run(["cp", "-a", f"{HERE / 'appliance/debian'}/.", f"{tree}/"])
        run(
            [
                "chroot",
                str(tree),
                "systemctl",
                "enable",
                "systemd-networkd.service",
                "systemd-resolved.service",
                "systemd-timesyncd.service",
            ]
        )
    (tree / "etc/hostname").write_text("cultivai\n")
    shutil.rmtree(wh)
    (tree / "tmp" / wheel.name).unlink()
    grub = Path("/usr/lib/grub/i386-pc")
    if arch == "amd64" and grub.is_dir():
        dest = tree / "boot/grub/i386-pc"
        dest.mkdir(parents=True, exist_ok=True)
        for mod in grub.iterdir():
            if mod.suffix in (".mod", ".lst"):
                shutil.copy2(mod, dest / mod.name)


def prune_cache(arch: str, keep: Path, images: int = 2) -> None:
    """Remove older cached images of `arch`, keeping the newest few (and `keep`)."""
    found = sorted(
        cache_dir().glob(f"cultivai-{arch}-*.img"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for old in [p for p in found if p != keep][images - 1 :]:
        old.unlink(missing_ok=True)


def build(arch: str, wheel: Path, out: Path, mirror: str | None, fmt: str) -> Path:
    """Build (or take from the cache) the image; returns the path written."""
    t0 = time.monotonic()
    mirror = mirror or debian_mirror()
    base = ensure_base(arch, mirror)
    t_base = time.monotonic() - t0
    key = image_key(base, wheel, arch)
    cached = cache_dir() / f"cultivai-{arch}-{key}.img"
    if not cached.exists():
        wheelhouse = ensure_wheelhouse(arch, wheel, "edge")
        with tempfile.TemporaryDirectory(dir=cache_dir(), prefix="work-") as w:
            work = Path(w)
            tree = work / "tree"
            run(["cp", "-a", "--reflink=auto", str(base), str(tree)])
            apply_appliance(tree, wheel, wheelhouse, arch)
            assemble(arch, tree, cached, work)
    prune_cache(arch, keep=cached)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    if fmt == "qcow2":
        run(["qemu-img", "convert", "-O", "qcow2", str(cached), str(out)])
    else:
        run(["cp", "--sparse=always", str(cached), str(out)])
    for suffix in (".vmlinuz", ".initrd"):
        if cached.with_suffix(suffix).exists():
            shutil.copy2(cached.with_suffix(suffix), out.with_suffix(suffix))
    total = time.monotonic() - t0
    size = out.stat().st_size
    print(
        json.dumps(
            {
                "image": str(out),
                "arch": arch,
                "bytes": size,
                "base_s": round(t_base, 1),
                "total_s": round(total, 1),
            }
        )
    )
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: build one image."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(ARCH_PACKAGES), default="amd64")
    p.add_argument("--wheel", type=Path, required=True, help="the agent wheel (make dist)")
    p.add_argument("--out", type=Path, help="where to write the image")
    p.add_argument("--format", choices=["raw", "qcow2"], default="raw")
    p.add_argument("--mirror", help="Debian mirror URL (default: from the apt sources)")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        print("image build: needs root (debootstrap, chroot, file ownership)", file=sys.stderr)
        return 2
    out = (
        a.out
        or Path("dist") / f"cultivai-edge-{a.arch}.{'qcow2' if a.format == 'qcow2' else 'img'}"
    )
    try:
        build(a.arch, a.wheel.resolve(), out, a.mirror, a.format)
    except BuildError as exc:
        print(f"image build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
