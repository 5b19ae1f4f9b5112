"""What the firmware tests install: the project's wheel, a wheelhouse, small test wheels.

The wheelhouse of the edge dependencies is downloaded once and kept in the user's
cache (keyed by a hash of pyproject.toml and the Python version), so later runs need
no network at all; every release venv is installed from it with --no-index.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cultivai"


def build_wheel(out: Path) -> Path:
    """The project's wheel, as `make dist` builds it."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("cultivai_edge-*.whl")
    return wheel


def wheelhouse(wheel: Path) -> Path:
    """Every wheel the edge extra needs, for this Python; downloaded once, then cached."""
    key = hashlib.sha256((REPO / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()[
        :16
    ]
    folder = cache_dir() / f"wheelhouse-edge-{key}"
    if (folder / ".complete").is_file():
        return folder
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--dest",
            str(tmp),
            f"{wheel}[edge]",
        ],
        check=True,
        capture_output=True,
    )
    for own in tmp.glob("cultivai_edge-*.whl"):
        own.unlink()  # the release's wheel is given on its own
    (tmp / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


TINY_MAIN = '''"""A stand-in firmware for update tests: {behaviour}."""
import sys

VERSION = "{version}"


def main():
    args = sys.argv[1:]
    if "{behaviour}" == "never-starts":
        print("ImportError: a library this release needs is missing", file=sys.stderr)
        return 1
    if args[:1] == ["--version"]:
        print("cultivai-edge " + VERSION)
        return 0
    if "{behaviour}" == "crashes-at-start":
        print("error: cannot open the camera driver this release expects", file=sys.stderr)
        return 1
    print("cultivai-edge " + VERSION + " " + " ".join(args))
    return 0
'''


def tiny_wheel(out: Path, version: str, behaviour: str = "works") -> Path:
    """A real, small wheel named cultivai_edge whose `cultivai-edge` script does `behaviour`.

    works: every command exits 0; crashes-at-start: `--version` works, `run` exits 1;
    never-starts: even `--version` exits 1.
    """
    out.mkdir(parents=True, exist_ok=True)
    info = f"cultivai_edge-{version}.dist-info"
    files = {
        "cultivai_tiny.py": TINY_MAIN.format(version=version, behaviour=behaviour).encode(),
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: cultivai-edge\nVersion: {version}\n"
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: cultivai-tests\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": b"[console_scripts]\ncultivai-edge = cultivai_tiny:main\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    path = out / f"cultivai_edge-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
    return path


SERVICE = '''"""Starts and stops the agent from `current`, as systemd would (test stand-in)."""
import os, signal, subprocess, sys, time

ROOT, CONFIG, PIDFILE, LOG = {root!r}, {config!r}, {pidfile!r}, {log!r}


def alive(pid):
    try:
        with open(f"/proc/{{pid}}/stat") as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def stop():
    try:
        pid = int(open(PIDFILE).read())
    except (OSError, ValueError):
        return
    if alive(pid):
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 30
        while alive(pid) and time.monotonic() < end:
            time.sleep(0.1)
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    os.unlink(PIDFILE)


def start():
    exe = os.path.join(ROOT, "current", "venv", "bin", "cultivai-edge")
    with open(LOG, "ab") as log:
        proc = subprocess.Popen([exe, "run", "--config", CONFIG], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    with open(PIDFILE, "w") as fh:
        fh.write(str(proc.pid))


action = sys.argv[1]
if action in ("stop", "restart"):
    stop()
if action in ("start", "restart"):
    start()
'''


def service_script(folder: Path, root: Path, config: Path) -> tuple[Path, Path]:
    """A script taking start/stop/restart, and the pid file it keeps."""
    pidfile = folder / "agent.pid"
    script = folder / "service.py"
    script.write_text(
        SERVICE.format(
            root=str(root), config=str(config), pidfile=str(pidfile), log=str(folder / "agent.log")
        )
    )
    return script, pidfile
