"""A private Mosquitto broker for tests: generated config, free port, stop and restart."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto")


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """One mosquitto process on 127.0.0.1; `extra` lines go into its config file.

    It keeps its port and persistence folder across stop()/start(), like a broker
    that is restarted in production. Running as root, mosquitto would drop to the
    `mosquitto` user and could not write the test's folder, hence `user root`.
    """

    def __init__(self, workdir: Path, extra: str = "", port: int | None = None) -> None:
        self.binary = find_mosquitto()
        if self.binary is None:
            raise RuntimeError("mosquitto is not installed (Debian package 'mosquitto')")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.config_path = workdir / "mosquitto.conf"
        self.log_path = workdir / "mosquitto.log"

    def write_config(self) -> None:
        """Write the broker's config file."""
        lines = [
            f"listener {self.port} {self.host}",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "max_queued_messages 100000",
        ]
        if os.geteuid() == 0:
            lines.insert(0, "user root")
        if "allow_anonymous" not in self.extra:
            lines.append("allow_anonymous true")
        self.config_path.write_text("\n".join(lines) + "\n" + self.extra + "\n")

    def start(self, timeout: float = 10.0) -> Broker:
        """Start mosquitto and wait until it accepts connections."""
        self.write_config()
        assert self.binary is not None
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                log = self.log_path.read_text() if self.log_path.exists() else ""
                raise RuntimeError(f"mosquitto exited at start: {err}\n{log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM; it saves its persistence file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log(self) -> str:
        """The broker's log so far."""
        return self.log_path.read_text() if self.log_path.exists() else ""


SHIPPED_DIR = Path(__file__).resolve().parent.parent / "examples" / "mosquitto"
# Lines of the shipped config that name this host's files or listeners; the test broker
# replaces them with its own port and folder and keeps every other setting as shipped.
_LOCAL_KEYS = {
    "listener",
    "cafile",
    "certfile",
    "keyfile",
    "tls_version",
    "password_file",
    "acl_file",
    "persistence_location",
    "log_dest",
    "user",
    "pid_file",
}


class ShippedBroker(Broker):
    """Mosquitto running the shipped examples/mosquitto config and ACL, on a test port.

    Only `user root`, the listener, and paths differ from the example; `users` maps user
    names to passwords for the password file.
    """

    def __init__(self, workdir: Path, users: dict[str, str], port: int | None = None) -> None:
        super().__init__(workdir, port=port)
        self.users = users
        self.passwd_path = workdir / "passwd"
        self.acl_path = workdir / "cultivai.acl"

    def write_config(self) -> None:
        """The shipped config with this broker's port and paths."""
        if not self.passwd_path.exists():
            for i, (user, password) in enumerate(self.users.items()):
                flags = ["-c"] if i == 0 else []
                subprocess.run(
                    ["mosquitto_passwd", *flags, "-b", str(self.passwd_path), user, password],
                    check=True,
                )
        shutil.copyfile(SHIPPED_DIR / "cultivai.acl", self.acl_path)
        # The test listener takes the place of the shipped first listener, so settings
        # that must follow a listener line still do.
        shipped: list[str] = []
        for line in (SHIPPED_DIR / "cultivai.conf").read_text().splitlines():
            key = line.split(" ", 1)[0]
            if key == "listener" and not any(s.startswith("listener ") for s in shipped):
                shipped.append(f"listener {self.port} {self.host}")
            elif key not in _LOCAL_KEYS:
                shipped.append(line)
        local = [
            f"password_file {self.passwd_path}",
            f"acl_file {self.acl_path}",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
        ]
        if os.geteuid() == 0:
            local.insert(0, "user root")
        self.config_path.write_text("\n".join(local + shipped) + "\n")

    def kill(self) -> None:
        """SIGKILL the broker: no final save, like a crash or power loss."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
