"""systemd's notify protocol (sd_notify): readiness, status line, watchdog, stopping.

systemd passes a datagram socket in `$NOTIFY_SOCKET` (a path, or `@name` for an
abstract socket) to a `Type=notify` service, and `$WATCHDOG_USEC` when the unit sets
`WatchdogSec=`. Without `$NOTIFY_SOCKET` (run by hand, in tests, in a container) every
call here does nothing. Sending never raises: a full or vanished socket is logged once
and the agent carries on, because losing a status line must not stop captures.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from edge import __version__

log = logging.getLogger(__name__)

# A ping at half the timeout leaves one missed ping of slack, as sd_watchdog_enabled(3)
# recommends; never more often than this, so a tiny WatchdogSec cannot spin the loop.
MIN_PING_INTERVAL_S = 0.05
MAX_STATUS_CHARS = 200
# Written into the data folder at READY, with or without systemd: the firmware
# updater reads it to know that the release it switched to has really started.
READY_FILE = "agent-ready.json"


class Notifier:
    """Sends state changes to systemd; a no-op when the process was not started by it."""

    def __init__(
        self,
        socket_address: str | None,
        watchdog_usec: int | None = None,
        ready_file: Path | None = None,
    ) -> None:
        self._address = _address(socket_address) if socket_address else None
        self._ready_file = ready_file
        self.watchdog_s = watchdog_usec / 1e6 if watchdog_usec else None
        self._sock: socket.socket | None = None
        self._warned = False

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str] | None = None, ready_file: Path | None = None
    ) -> Notifier:
        """The notifier systemd's environment asks for (disabled when it asks for none)."""
        env = os.environ if environ is None else environ
        watchdog_usec: int | None = None
        raw = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        # WATCHDOG_PID names the process the watchdog is meant for: a child started
        # with the same environment (a helper, a subprocess) must not feed it.
        if raw and (not pid or pid == str(os.getpid())):
            try:
                watchdog_usec = int(raw)
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC: not a number", extra={"value": raw})
            else:
                if watchdog_usec <= 0:
                    watchdog_usec = None
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog_usec, ready_file)

    @property
    def enabled(self) -> bool:
        """True when there is a notify socket to talk to."""
        return self._address is not None

    @property
    def watchdog_enabled(self) -> bool:
        """True when systemd expects watchdog pings."""
        return self.enabled and self.watchdog_s is not None

    def ping_interval_s(self, capture_interval_s: float) -> float | None:
        """How often the capture loop must show progress; None without a watchdog.

        Half the watchdog timeout, and never longer than the capture interval: the
        loop wakes at least this often while it waits for the next capture.
        """
        if not self.watchdog_enabled or self.watchdog_s is None:
            return None
        return max(MIN_PING_INTERVAL_S, min(self.watchdog_s / 2, capture_interval_s))

    def ready(self, status: str | None = None) -> None:
        """Start-up is complete (store and camera opened): systemd may start dependants."""
        if self._ready_file is not None:
            _write_ready_file(self._ready_file, status)
        self._send({"READY": "1", **({"STATUS": status} if status else {})})

    def status(self, text: str) -> None:
        """The one-line status `systemctl status` shows."""
        self._send({"STATUS": text})

    def watchdog(self) -> None:
        """The capture loop made progress: reset systemd's watchdog timer."""
        if self.watchdog_enabled:
            self._send({"WATCHDOG": "1"})

    def stopping(self, status: str | None = None) -> None:
        """Shutdown has begun."""
        self._send({"STOPPING": "1", **({"STATUS": status} if status else {})})

    def close(self) -> None:
        """Close the socket (the next message opens it again)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, fields: dict[str, str]) -> bool:
        if self._address is None:
            return False
        lines = []
        for key, value in fields.items():
            # One field per line: a newline inside a value would forge another field.
            clean = " ".join(value.split())[:MAX_STATUS_CHARS]
            lines.append(f"{key}={clean}")
        message = ("\n".join(lines) + "\n").encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self._address)
        except OSError as exc:
            self.close()
            if not self._warned:
                self._warned = True
                log.warning(
                    "cannot reach systemd's notify socket",
                    extra={"socket": _printable(self._address), "error": str(exc)},
                )
            return False
        return True


def _write_ready_file(path: Path, status: str | None) -> None:
    """Who started, from which install, when: written to a temporary name, then renamed."""
    record = {
        "pid": os.getpid(),
        "version": __version__,
        "prefix": sys.prefix,
        "ready_at": datetime.now(timezone.utc).isoformat(),
        "status": status or "",
    }
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("cannot write the ready file", extra={"path": str(path), "error": str(exc)})


def _address(raw: str) -> str | bytes:
    """`@name` is an abstract socket (a leading NUL byte); anything else a path."""
    if raw.startswith("@"):
        return b"\0" + raw[1:].encode()
    return raw


def _printable(address: str | bytes) -> str:
    if isinstance(address, bytes):
        return "@" + address[1:].decode(errors="replace")
    return address
