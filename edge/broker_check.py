"""One real MQTT CONNECT with the device's credentials and TLS, for `selftest`.

A TCP connect says nothing about a broker that refuses the device's password or
whose certificate the configured CA does not trust; this sends CONNECT and reports
the broker's CONNACK reason code. It connects as `<device id>-selftest` with a clean
session and no Will, so nothing is published.

While the agent runs, no second CONNECT is made: a broker that takes the client id
from the user name (`use_username_as_clientid`, as the shipped broker config does)
would give it the agent's id and disconnect the agent. The agent records its own
link (connected or not, and why) in the data folder whenever it changes, and the
self-test reports that instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from edge.config import MqttConfig

LINK_STATE_FILE = "broker-link.json"
LOCK_SUFFIX = ".lock"  # held by the link that owns the state file
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"
MAX_STATE_BYTES = 4096
UNSUPPORTED_PROTOCOL = (1, 132)  # CONNACK codes: 3.1.1 "refused protocol", 5 "unsupported"
_VERSIONS = {"5": MQTTProtocolVersion.MQTTv5, "3.1.1": MQTTProtocolVersion.MQTTv311}


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """What the broker answered: accepted or not, and why, in words."""

    accepted: bool
    detail: str


def _password(config: MqttConfig) -> str | None:
    if config.password_file is None:
        return None
    try:
        return config.password_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"mqtt.password_file {config.password_file} cannot be read: "
            f"{getattr(exc, 'strerror', None) or exc}"
        ) from None


def _client(config: MqttConfig, client_id: str, version: MQTTProtocolVersion) -> paho.Client:
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=version,
        clean_session=None if version == MQTTProtocolVersion.MQTTv5 else True,
    )
    if config.username is not None:
        client.username_pw_set(config.username, _password(config))
    if config.tls is not None:
        tls = config.tls
        try:
            client.tls_set(
                ca_certs=str(tls.ca_file),
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (ssl.SSLError, OSError) as exc:
            raise ValueError(f"mqtt.tls files cannot be loaded: {exc}") from None
    return client


def _attempt(
    config: MqttConfig, client_id: str, version: MQTTProtocolVersion, timeout_s: float
) -> tuple[Any, str]:
    """(CONNACK reason code or None, failure text) of one CONNECT."""
    client = _client(config, client_id, version)
    client.connect_timeout = timeout_s
    answers: list[Any] = []
    client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
    where = f"{config.host}:{config.port}"
    try:
        client.connect(config.host, config.port, keepalive=max(config.keepalive_s, 5))
    except ssl.SSLCertVerificationError as exc:
        return None, f"{where}: TLS: the broker's certificate is not trusted: {exc.verify_message}"
    except ssl.SSLError as exc:
        return None, f"{where}: TLS handshake failed: {exc.reason or exc}"
    except TimeoutError:
        return None, f"{where}: no answer within {timeout_s:.0f} s"
    except OSError as exc:
        return None, f"{where}: cannot connect: {exc.strerror or exc}"
    deadline = time.monotonic() + timeout_s
    try:
        while not answers and time.monotonic() < deadline:
            rc = client.loop(timeout=0.1)
            if answers:
                break  # a refusal closes the socket too, after on_connect has its code
            if rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                return None, f"{where}: the broker closed the connection before CONNACK ({rc.name})"
    finally:
        if answers and not answers[0].is_failure:
            client.disconnect()
            client.loop(timeout=0.1)
        sock = client.socket()
        if sock is not None:
            sock.close()
    if not answers:
        return None, f"{where}: no CONNACK within {timeout_s:.0f} s (is it an MQTT port?)"
    return answers[0], ""


def try_connect(config: MqttConfig, client_id: str, timeout_s: float = 10.0) -> ConnectResult:
    """CONNECT once with the configured credentials and TLS; never raises for a bad broker."""
    versions = (
        [MQTTProtocolVersion.MQTTv5, MQTTProtocolVersion.MQTTv311]
        if config.protocol == "auto"
        else [_VERSIONS[config.protocol]]
    )
    try:
        for version in versions:
            reason, failure = _attempt(config, client_id, version, timeout_s)
            if reason is None:
                return ConnectResult(False, failure)
            if reason.value in UNSUPPORTED_PROTOCOL and version != versions[-1]:
                continue
            break
    except ValueError as exc:
        return ConnectResult(False, str(exc))
    name = "MQTT 5" if version == MQTTProtocolVersion.MQTTv5 else "MQTT 3.1.1"
    how = ", ".join(
        part
        for part in (
            name,
            "TLS" if config.tls is not None else "plain TCP",
            f"user {config.username}" if config.username else "anonymous",
        )
    )
    where = f"{config.host}:{config.port}"
    if reason.is_failure:
        return ConnectResult(
            False, f"{where}: broker refused CONNECT: {reason} (reason code {reason.value}; {how})"
        )
    return ConnectResult(True, f"{where}: CONNECT accepted ({how})")


def _boot_id() -> str | None:
    """This boot's id: a file from before a power cut or reboot has another one."""
    try:
        return Path(BOOT_ID_FILE).read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _started(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot, /proc/<pid>/stat field 22), or None.

    A pid is reused by the next process that gets it; its start time is not.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


class LinkState:
    """The state file of one MQTT link: written only by the link that owns it.

    The first link on a data folder takes an exclusive lock (flock on a file beside
    the state, released by the kernel when the process ends however it ends) and
    keeps it until it stops. A second link on the same folder (a `capture` run
    beside the agent) gets no lock: it neither writes the agent's state over nor
    deletes it when it closes. A failure to write is not fatal: the self-test then
    makes its own CONNECT, as with no agent running.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _own(self) -> bool:
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path.with_name(self.path.name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # held by the running agent: its state is not ours to touch
            return False
        self._fd = fd
        return True

    @property
    def owned(self) -> bool:
        """True while this link holds the state file."""
        return self._fd is not None

    def record(self, connected: bool, detail: str) -> None:
        """Say whether the link is connected, and why not."""
        from edge.store import write_atomic

        pid = os.getpid()
        state = {
            "pid": pid,
            "boot_id": _boot_id(),
            "started": _started(pid),
            "connected": connected,
            "detail": detail[:500],
            "at": datetime.now(timezone.utc).isoformat(),
        }
        with self._lock:
            if not self._own():
                return
            with contextlib.suppress(OSError):
                write_atomic(self.path, json.dumps(state).encode())

    def forget(self) -> None:
        """The link stops: remove its state (only its own) and let the lock go."""
        with self._lock:
            if self._fd is None:
                return
            try:
                if _recorded_pid(self.path) == os.getpid():
                    self.path.unlink(missing_ok=True)
            except OSError:
                pass
            finally:
                os.close(self._fd)
                self._fd = None


def _recorded_pid(path: Path) -> int | None:
    try:
        return int(json.loads(path.read_bytes()[:MAX_STATE_BYTES])["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def running_agent_link(path: Path) -> ConnectResult | None:
    """The link of the agent running on this data folder, or None when none runs.

    A file left by an agent that did not stop (killed, power cut) is recognised: its
    boot id is another boot's, or its pid now belongs to a process started at another
    time.
    """
    try:
        raw = path.read_bytes()[:MAX_STATE_BYTES]
        state = json.loads(raw)
        pid, connected = int(state["pid"]), bool(state["connected"])
        detail, at = str(state["detail"]), str(state["at"])
        boot_id, started = state.get("boot_id"), state.get("started")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if pid == os.getpid() or not _alive(pid):
        return None  # left behind by an agent that did not stop cleanly
    if boot_id != _boot_id() or started != _started(pid):
        return None  # from before a reboot, or the pid is another process's now
    said = "connected" if connected else "not connected"
    return ConnectResult(connected, f"the running agent (pid {pid}) is {said} since {at}: {detail}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
