"""systemd notify protocol: real datagram sockets, the real agent process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge.systemd import Notifier

REPO = Path(__file__).resolve().parent.parent


class NotifySocket:
    """What systemd's side of NOTIFY_SOCKET receives: each datagram, parsed, timestamped."""

    def __init__(self, address: str) -> None:
        self.address = address  # as it goes into NOTIFY_SOCKET
        bind = "\0" + address[1:] if address.startswith("@") else address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def with_field(self, key: str) -> list[tuple[float, dict[str, str]]]:
        with self._lock:
            return [(t, m) for t, m in self.messages if key in m]

    def wait_for(self, key: str, timeout: float = 60, after: float = 0.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [m for t, m in self.with_field(key) if t >= after]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {key}= message within {timeout} s; got {self.messages}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    """A datagram socket on a short path (AF_UNIX paths are limited to 108 bytes)."""
    folder = tempfile.mkdtemp(prefix="notify-", dir="/tmp")
    listener = NotifySocket(os.path.join(folder, "notify"))
    yield listener
    listener.close()
    os.unlink(listener.address)
    os.rmdir(folder)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")}
    return {**env, "PYTHONPATH": str(REPO), **extra}


# -- the protocol ------------------------------------------------------------------


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled and not notifier.watchdog_enabled
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    assert notifier.ping_interval_s(60) is None


def test_abstract_socket_receives_ready_and_status() -> None:
    listener = NotifySocket(f"@cultivai-test-{os.getpid()}-{time.monotonic_ns()}")
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": listener.address})
        notifier.ready("started; camera open")
        assert listener.wait_for("READY", 5) == {"READY": "1", "STATUS": "started; camera open"}
    finally:
        listener.close()


def test_a_newline_in_a_status_cannot_forge_another_field(notify_socket: NotifySocket) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": notify_socket.address})
    notifier.status("camera error\nREADY=1\nMAINPID=1")
    message = notify_socket.wait_for("STATUS", 5)
    assert message == {"STATUS": "camera error READY=1 MAINPID=1"}


def test_watchdog_is_off_when_it_is_meant_for_another_process() -> None:
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}
    assert not Notifier.from_environ(env).watchdog_enabled
    env["WATCHDOG_PID"] = str(os.getpid())
    assert Notifier.from_environ(env).watchdog_enabled


def test_ping_interval_is_half_the_timeout_and_at_most_the_capture_interval() -> None:
    notifier = Notifier("/nonexistent", watchdog_usec=120_000_000)
    assert notifier.ping_interval_s(900) == 60
    assert notifier.ping_interval_s(10) == 10


def test_a_vanished_socket_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"), watchdog_usec=1_000_000)
    notifier.watchdog()  # logs once, raises nothing
    notifier.status("still running")


def test_bad_watchdog_usec_disables_the_watchdog_only() -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "soon"})
    assert notifier.enabled and not notifier.watchdog_enabled


# -- the real agent ----------------------------------------------------------------


def test_agent_is_ready_after_the_store_opens_then_pings_and_stops(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    data = tmp_path / "data"
    config = tmp_path / "edge.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"id": "notify-cam"},
                "camera": {"backend": "synthetic", "width": 160, "height": 120},
                "storage": {"dir": str(data), "min_free_mb": 0},
                "model": {"enabled": False},
                "schedule": {"interval_s": 1},
                "web": {"enabled": True, "host": "127.0.0.1", "port": _free_port()},
            }
        )
    )
    env = _env(NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="2000000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", "run", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = notify_socket.wait_for("READY", 90)
        assert (data / "edge.sqlite3").is_file(), "READY came before the store was opened"
        assert "camera open" in ready["STATUS"]
        t_ready = notify_socket.with_field("READY")[0][0]
        deadline = time.monotonic() + 30
        while not any("last capture" in m["STATUS"] for _, m in notify_socket.with_field("STATUS")):
            assert time.monotonic() < deadline, "no status line after a capture"
            time.sleep(0.1)
        time.sleep(3)
        pings = [t for t, _ in notify_socket.with_field("WATCHDOG") if t >= t_ready]
        assert len(pings) >= 3  # about one per second at WatchdogSec=2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert notify_socket.with_field("STOPPING")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_pings_stop_when_the_capture_loop_hangs(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    data = tmp_path / "data"
    env = _env(NOTIFY_SOCKET=notify_socket.address, WATCHDOG_USEC="1000000")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.notify_driver", str(data)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        notify_socket.wait_for("READY", 90)
        t0 = time.monotonic()
        time.sleep(2.5)
        assert len([t for t, _ in notify_socket.with_field("WATCHDOG") if t >= t0]) >= 3
        (data / "hang").touch()
        line = ""
        while "camera hung" not in line:
            line = proc.stdout.readline()
            assert line, "the driver ended before its camera hung"
        hung_at = time.monotonic()
        time.sleep(3)
        late = [t for t, _ in notify_socket.with_field("WATCHDOG") if t > hung_at + 0.2]
        assert late == [], "the watchdog was fed while the capture loop was stuck"
        assert proc.poll() is None  # alive: only systemd's watchdog can notice
    finally:
        proc.kill()
        proc.wait()
