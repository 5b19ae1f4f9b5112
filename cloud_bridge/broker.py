"""The one module that touches paho: the bridge's broker session, receive, ack and publish.

One network thread owns the paho client and drives it with paho's external-loop calls
(`loop_read`, `loop_write`, `loop_misc`). Other threads never call paho: they hand
acknowledgements and publishes to `ack()` and `publish()`, which queue them and wake
the network thread through a socket pair. That keeps paho single-threaded and lets the
network thread drop acknowledgements that belong to an earlier connection: packet ids
are per connection, and after a reconnect the broker redelivers those messages itself
(the session is persistent), so acking an old id could acknowledge a different message.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from cloud_bridge.config import MqttConfig, read_secret
from edge.protocol import TOPIC_ROOT

log = logging.getLogger("cloud_bridge.broker")


def bridge_topics(kinds: Iterable[str]) -> list[str]:
    """The bridge's subscriptions: `cultivai/v1/+/<kind>`, one plain filter per kind.

    Not MQTT 5 shared subscriptions (`$share/<group>/...`), for two reasons measured on
    Mosquitto 2.0: its ACL file does not check subscriptions, so any device could join the
    group and take a share of every device's messages, which its read ACL then refuses
    to deliver (lost, though the publisher got its PUBACK); and it does not save shared
    subscriptions in its persistence file, so after a broker restart the bridge session
    queued nothing until the bridge subscribed again. Several bridges each receive every
    message; the database's unique keys store each one once.
    """
    return [f"{TOPIC_ROOT}/+/{kind}" for kind in kinds]


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as it arrived: raw topic and bytes, and what acknowledging it needs."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    connection: int
    arrived: float
    received_at: datetime


class BrokerLink:
    """A persistent MQTT 5 session with manual acknowledgement, run by one network thread."""

    def __init__(
        self,
        config: MqttConfig,
        topics: list[str],
        deliver: Callable[[Inbound], None],
    ) -> None:
        self.config = config
        self.topics = topics
        self.deliver = deliver
        self._acks: deque[Inbound] = deque()
        self._publishes: deque[tuple[str, bytes, int]] = deque()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._connection = 0
        self._connected = False
        self._subscribed = threading.Event()
        self.session_present = False
        self._client = self._make_client()

    @property
    def ready(self) -> bool:
        """True while connected and subscribed."""
        return self._connected and self._subscribed.is_set()

    def wait_ready(self, timeout: float) -> bool:
        """Block until subscribed (or timeout); for start-up and tests."""
        return self._subscribed.wait(timeout)

    def ack(self, messages: Iterable[Inbound]) -> None:
        """Acknowledge messages whose batch has committed (any thread)."""
        self._acks.extend(m for m in messages if m.qos > 0)
        self.wake()

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish a message, e.g. a command to a device (any thread)."""
        self._publishes.append((topic, payload, qos))
        self.wake()

    def wake(self) -> None:
        """Interrupt the network thread's wait (any thread)."""
        with contextlib.suppress(OSError):  # already woken (buffer full), or closing
            self._wake_w.send(b"\0")

    def _make_client(self) -> mqtt.Client:
        c = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=c.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            manual_ack=True,
        )
        if c.username is not None:
            password = read_secret(c.password_file, "broker password") if c.password_file else None
            client.username_pw_set(c.username, password)
        if c.tls is not None:
            client.tls_set(
                ca_certs=str(c.tls.ca_file),
                certfile=str(c.tls.cert_file) if c.tls.cert_file else None,
                keyfile=str(c.tls.key_file) if c.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        return client

    def _connect_properties(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.config.session_expiry_s
        props.ReceiveMaximum = self.config.receive_maximum
        return props

    # Callbacks: all run on the network thread, inside loop_read().

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the connection", extra={"reason": str(reason)})
            return
        self._connection += 1
        self._connected = True
        self.session_present = flags.session_present
        if not flags.session_present:
            log.warning(
                "broker had no session for this bridge: messages published while no bridge "
                "session existed are not queued (seq gap backfill asks devices for them)",
                extra={"client_id": self.config.client_id},
            )
        client.subscribe([(t, SubscribeOptions(qos=1)) for t in self.topics])
        log.info(
            "connected to broker",
            extra={"host": self.config.host, "session_present": flags.session_present},
        )

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _mid: int,
        reasons: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        failed = [str(r) for r in reasons if r.is_failure]
        if failed:
            log.error("broker refused subscriptions", extra={"reasons": failed})
            return
        self._subscribed.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: Any,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if self._connected:
            level = logging.INFO if reason.value == 0 else logging.WARNING
            log.log(level, "disconnected from broker", extra={"reason": str(reason)})
        self._connected = False
        self._subscribed.clear()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:
            topic = "(topic is not UTF-8)"
        self.deliver(
            Inbound(
                topic=topic,
                payload=bytes(msg.payload),
                qos=msg.qos,
                mid=msg.mid,
                connection=self._connection,
                arrived=time.monotonic(),
                received_at=datetime.now(timezone.utc),
            )
        )

    # The network thread.

    def run(self, stop: threading.Event) -> None:
        """Connect, keep the session, move messages; returns after `stop` and a clean disconnect."""
        delay = 0.2
        first = True
        while not stop.is_set():
            try:
                if first:
                    self._client.connect(
                        self.config.host,
                        self.config.port,
                        keepalive=self.config.keepalive_s,
                        clean_start=False,
                        properties=self._connect_properties(),
                    )
                    first = False
                else:
                    self._client.reconnect()
            except (OSError, ssl.SSLError) as exc:
                log.warning(
                    "cannot reach broker",
                    extra={"host": self.config.host, "error": str(exc), "retry_s": delay},
                )
                stop.wait(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)
                continue
            if self._pump(stop):
                delay = 0.2
            if not stop.is_set():
                stop.wait(delay)
                delay = min(delay * 2, self.config.reconnect_max_s)
        self._disconnect()

    def _pump(self, stop: threading.Event) -> bool:
        """Drive one connection until it drops or `stop` is set; True if it got subscribed."""
        client = self._client
        worked = False
        while not stop.is_set():
            worked = worked or self.ready
            sock = client.socket()
            if sock is None:
                return worked
            pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
            writers = [sock] if client.want_write() else []
            readable, _, _ = select.select([sock, self._wake_r], writers, [], 0 if pending else 1.0)
            ok = MQTTErrorCode.MQTT_ERR_SUCCESS
            if (sock in readable or pending) and client.loop_read() != ok:
                return worked
            if self._wake_r in readable:
                self._drain_wake()
            if self._flush() != ok:
                return worked
            if client.want_write() and client.loop_write() != ok:
                return worked
            if client.loop_misc() != ok:
                return worked
        return worked

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _flush(self) -> MQTTErrorCode:
        """Send queued acks (of this connection only) and publishes."""
        client = self._client
        if not self._connected:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        while self._acks:
            message = self._acks.popleft()
            if message.connection != self._connection:
                continue  # the broker redelivers it on this connection; that copy gets acked
            rc = client.ack(message.mid, message.qos)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        while self._publishes:
            topic, payload, qos = self._publishes.popleft()
            client.publish(topic, payload, qos=qos)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _disconnect(self) -> None:
        """Send what is queued, then DISCONNECT; the broker keeps the session for next time."""
        client = self._client
        if self._connected:
            self._flush()
            client.disconnect()
            deadline = time.monotonic() + 2.0
            while client.want_write() and time.monotonic() < deadline:
                if client.loop_write() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self._connected = False
        self._subscribed.clear()
        self._wake_r.close()
        self._wake_w.close()
