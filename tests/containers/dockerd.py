"""A private Docker daemon for the container tests, from Debian's docker.io package.

It has its own data root (where built images stay between runs), exec root, pid file
and unix socket under the cache folder, and no networking of its own: no docker0
bridge, no iptables rules. Containers run with `--network host` only and talk to
services on 127.0.0.1. One test session at a time uses it (a file lock); the daemon is
stopped when the session ends.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from tests.containers.images import cache_root


def find_dockerd() -> str | None:
    """The dockerd binary, or None."""
    return shutil.which("dockerd") or (
        "/usr/sbin/dockerd" if Path("/usr/sbin/dockerd").exists() else None
    )


class DockerError(AssertionError):
    """A docker command failed; the message holds its output."""


class PrivateDockerd:
    """Start, use and stop one dockerd whose state lives under `root`."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or cache_root() / "dockerd"
        self.socket = self.root / "docker.sock"
        self.pidfile = self.root / "dockerd.pid"
        self.log_path = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock: IO[str] | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment for docker and docker-compose talking to this daemon."""
        return {**os.environ, "DOCKER_HOST": f"unix://{self.socket}", "DOCKER_BUILDKIT": "0"}

    def start(self, timeout: float = 60.0, lock_wait: float = 600.0) -> PrivateDockerd:
        """Take the lock, start dockerd and wait until it answers."""
        dockerd = find_dockerd()
        if dockerd is None:
            raise RuntimeError("dockerd not found (make system-deps installs docker.io)")
        self.root.mkdir(parents=True, exist_ok=True)
        self._take_lock(lock_wait)
        self._stop_leftover()
        (self.root / "data").mkdir(exist_ok=True)
        (self.root / "exec").mkdir(exist_ok=True)
        self.socket.unlink(missing_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    dockerd,
                    f"--data-root={self.root / 'data'}",
                    f"--exec-root={self.root / 'exec'}",
                    f"--pidfile={self.pidfile}",
                    f"--host=unix://{self.socket}",
                    "--bridge=none",
                    "--iptables=false",
                    "--ip6tables=false",
                    "--ip-masq=false",
                    "--userland-proxy=false",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dockerd exited: {self.log_path.read_text()[-2000:]}")
            ok = subprocess.run(
                ["docker", "version", "--format", "{{.Server.Version}}"],
                env=self.env,
                capture_output=True,
                check=False,
            )
            if ok.returncode == 0:
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"dockerd did not answer within {timeout} s")

    def _take_lock(self, wait: float) -> None:
        self._lock = (self.root / "lock").open("w")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"another test run holds {self.root}/lock for longer than {wait} s"
                    ) from None
                time.sleep(1.0)

    def _stop_leftover(self) -> None:
        """A daemon left by a run that was killed holds the data root: stop it."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if b"dockerd" in cmdline and str(self.root).encode() in cmdline:
            os.kill(pid, signal.SIGTERM)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop the containers it runs, then the daemon; release the lock."""
        if self.proc is not None and self.proc.poll() is None:
            ids = self.docker("ps", "-q", check=False).stdout.split()
            if ids:
                self.docker("rm", "-f", *ids, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def docker(
        self, *args: str, check: bool = True, timeout: float = 900.0, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker ARGS` against this daemon; on failure raise with its output."""
        done = subprocess.run(
            ["docker", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,
        )
        if check and done.returncode != 0:
            raise DockerError(
                f"docker {' '.join(args)[:300]} exited {done.returncode}:\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def has_image(self, tag: str) -> bool:
        """Whether the image exists in this daemon's store."""
        return self.docker("image", "inspect", tag, check=False).returncode == 0
