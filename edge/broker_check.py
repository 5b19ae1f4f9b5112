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
import json
import os
import ssl
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from edge.config import MqttConfig

LINK_STATE_FILE = "broker-link.json"
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


def record_link(path: Path, connected: bool, detail: str) -> None:
    """The running agent's broker link, for `selftest`; a failure to write is not fatal."""
    from edge.store import write_atomic

    state = {
        "pid": os.getpid(),
        "connected": connected,
        "detail": detail[:500],
        "at": datetime.now(timezone.utc).isoformat(),
    }
    # Not written: the self-test then makes its own CONNECT, as with no agent running.
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps(state).encode())


def forget_link(path: Path) -> None:
    """The agent stops: no running agent speaks for the broker any more."""
    with contextlib.suppress(OSError):
        path.unlink(missing_ok=True)


def running_agent_link(path: Path) -> ConnectResult | None:
    """The link of the agent running on this data folder, or None when none runs."""
    try:
        raw = path.read_bytes()[:MAX_STATE_BYTES]
        state = json.loads(raw)
        pid, connected = int(state["pid"]), bool(state["connected"])
        detail, at = str(state["detail"]), str(state["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if pid == os.getpid() or not _alive(pid):
        return None  # left behind by an agent that did not stop cleanly
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
