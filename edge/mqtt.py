"""The one module that touches paho-mqtt: connection, outbox drain, status, commands.

One thread owns the client. It connects (MQTT 5, falling back to 3.1.1), with
exponential backoff and jitter between attempts, and hands the broker at most
`inflight_window` outbox messages at a time, in outbox order. paho keeps the
messages it was handed across reconnects and resends them in order; a PUBACK
deletes the message from the outbox. Whatever was not acknowledged when the
process stops is still in the outbox and is sent again after the restart.

QoS 0 messages (the retained Home Assistant thumbnail) have no PUBACK: one is
done once paho has written it to the socket, which may happen inside
`publish()` itself, and paho forgets the ones still queued when the connection
drops. Both cases are handled so that a message of any QoS either leaves the
outbox or is handed out again; none can hold a place in the send window forever.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.broker_check import LinkState
from edge.config import DeviceConfig, MqttConfig
from edge.homeassistant import discovery_messages
from edge.metrics import AgentMetrics
from edge.outbox import Outbox, Outgoing
from edge.protocol import Status, command_topic, topic

log = logging.getLogger(__name__)
UNSUPPORTED_PROTOCOL = (1, 132)  # CONNACK codes: 3.1.1 "refused protocol", 5 "unsupported"
# paho keeps at most `inflight_window` unacknowledged on the wire; handing it a few
# windows ahead lets it send the next message the moment a PUBACK arrives instead of
# waiting for this thread's next database read.
PREFETCH_WINDOWS = 4
ACK_FLUSH_BATCH = 500
ACK_FLUSH_S = 0.25
LOOP_SLICE_S = 0.2  # longest network wait before new outbox messages go out


@dataclass(frozen=True, slots=True)
class _Handed:
    """An outbox message paho holds: which row it is, and how to tell it was sent."""

    outbox_id: int
    qos: int
    info: paho.MQTTMessageInfo


def _written(info: paho.MQTTMessageInfo) -> bool:
    """Whether paho wrote a message to the socket; one it dropped with the link was not.

    paho's `is_published()` raises, rather than answering False, for a message whose
    connection was lost before it was written.
    """
    try:
        return info.is_published()
    except (RuntimeError, ValueError):
        return False


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: between half and all of low * 2**attempt, capped."""
    ceiling = min(high, low * (2 ** min(attempt, 30)))
    return rng.uniform(ceiling / 2, ceiling)


class MqttLink:
    """Connection to the broker for one device."""

    def __init__(
        self,
        config: MqttConfig,
        device: DeviceConfig,
        outbox: Outbox,
        *,
        status: Callable[[str], Status],
        stats: Callable[[], bytes],
        on_command: Callable[[str, bytes], None],
        metrics: AgentMetrics | None = None,
        firmware: str = "",
        health_labels: Callable[[], Sequence[str]] = tuple,
        status_page_port: int | None = None,
        link_state: Path | None = None,
        climate_entities: Sequence[str] = (),
    ) -> None:
        self.config = config
        # Where this link says whether it is connected, for `selftest` (None: nowhere).
        self._link_state = LinkState(link_state) if link_state is not None else None
        self.device = device
        self.outbox = outbox
        self._status = status
        self._stats = stats
        self._on_command = on_command
        self.metrics = metrics or AgentMetrics()
        self.metrics.watch_outbox(outbox)
        self._firmware = firmware
        self._climate_entities = tuple(climate_entities)
        self._health_labels = health_labels
        self._status_page_port = status_page_port
        self._protocol = (
            MQTTProtocolVersion.MQTTv311
            if config.protocol == "3.1.1"
            else MQTTProtocolVersion.MQTTv5
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._direct: queue.Queue[tuple[str, bytes, int, bool]] = queue.Queue()
        self._inflight: dict[int, _Handed] = {}  # paho mid -> the outbox message
        # mids whose on_publish ran inside publish(), before _hand_out could record them
        self._published_early: set[int] = set()
        self._handing = False
        self._closing = False
        self._acked: list[int] = []
        self._first_ack_at = 0.0
        self._last_handed = 0
        self._max_handed = 0  # the newest id ever handed out; above it nothing is held
        self._ready = False
        self.listening = threading.Event()  # set once the command subscription is granted
        self._rng = random.Random()
        self.local_ip: str | None = None
        self.connects = 0
        self.client = self._new_client()

    # -- lifecycle -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the next disconnect."""
        return self._ready

    def start(self) -> None:
        """Start the connection thread."""
        self._thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New messages are in the outbox."""
        self._wake.set()

    def publish_direct(
        self, topic_: str, payload: bytes, qos: int = 0, retain: bool = False
    ) -> None:
        """Send a message that is state, not history (stats, discovery); dropped if offline."""
        self._direct.put((topic_, payload, qos, retain))
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Announce offline, disconnect cleanly and end the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the client ----------------------------------------------------------------

    def _new_client(self) -> paho.Client:
        c = self.config
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.device.id,
            protocol=self._protocol,
            clean_session=None if self._protocol == MQTTProtocolVersion.MQTTv5 else True,
        )
        client.max_inflight_messages_set(c.inflight_window)
        client.enable_logger(logging.getLogger("edge.mqtt.paho"))
        if c.username is not None:
            password = None
            if c.password_file is not None:
                password = c.password_file.read_text(encoding="utf-8").strip()
            client.username_pw_set(c.username, password)
        if c.tls is not None:
            client.tls_set(
                ca_certs=str(c.tls.ca_file),
                certfile=str(c.tls.cert_file) if c.tls.cert_file else None,
                keyfile=str(c.tls.key_file) if c.tls.key_file else None,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.will_set(
            topic(self.device.id, "status"),
            self._status("offline").model_dump_json(),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect(self) -> None:
        c = self.config
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            self.client.connect(c.host, c.port, c.keepalive_s, clean_start=True)
        else:
            self.client.connect(c.host, c.port, c.keepalive_s)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            code = reason.value
            if (
                code in UNSUPPORTED_PROTOCOL
                and self.config.protocol == "auto"
                and (self._protocol == MQTTProtocolVersion.MQTTv5)
            ):
                log.warning("broker does not speak MQTT 5; falling back to 3.1.1")
                self._protocol = MQTTProtocolVersion.MQTTv311
                self._switch_protocol = True
            else:
                log.error("broker refused the connection", extra={"reason": str(reason)})
                self._record(False, f"broker refused the connection: {reason}")
            return
        self._ready = True
        self._resend_lost_qos0()
        self._wake.set()  # hand out what is waiting
        self.connects += 1
        self.metrics.broker_connected.set(1)
        sock = client.socket()
        self.local_ip = sock.getsockname()[0] if isinstance(sock, socket.socket) else None
        client.subscribe(command_topic(self.device.id), qos=1)
        online = self._status("online").model_dump_json()
        client.publish(topic(self.device.id, "status"), online, qos=1, retain=True)
        if self.config.homeassistant_discovery:
            client.subscribe(f"{self.config.homeassistant_prefix}/status", qos=1)
            self._announce()
        self._record(
            True, f"connected to {self.config.host}:{self.config.port} ({self._protocol.name})"
        )
        log.info(
            "connected to broker",
            extra={
                "host": self.config.host,
                "port": self.config.port,
                "protocol": self._protocol.name,
            },
        )

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any
    ) -> None:
        if not any(r.is_failure for r in reasons):
            self.listening.set()
        else:
            log.error("broker refused the command subscription", extra={"reasons": str(reasons)})

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if self._closing:
            log.info("disconnected from broker", extra={"reason": str(reason)})
        elif self._ready:
            log.warning("disconnected from broker", extra={"reason": str(reason)})
        if not self._closing:
            self._record(False, f"disconnected from the broker: {reason}")
        self._ready = False
        self.listening.clear()
        self.metrics.broker_connected.set(0)

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        handed = self._inflight.pop(mid, None)
        if handed is None:
            if self._handing:
                self._published_early.add(mid)
            return  # a direct message (status, stats, discovery), or one being handed out
        outbox_id = handed.outbox_id
        if reason.is_failure:
            # The broker will never take it (e.g. not authorised): retrying would
            # block the queue forever, so it is dropped and counted.
            log.error(
                "broker rejected a message; dropped",
                extra={"outbox_id": outbox_id, "reason": str(reason)},
            )
            self.metrics.messages_rejected.inc()
        self._mark_done(outbox_id)

    def _mark_done(self, outbox_id: int) -> None:
        if not self._acked:
            self._first_ack_at = time.monotonic()
        self._acked.append(outbox_id)

    def _resend_lost_qos0(self) -> None:
        """Hand out again the QoS 0 messages paho dropped with the last connection.

        paho resends QoS 1 messages after a reconnect but discards unsent QoS 0
        ones; rewinding the read cursor to the first of them sends them again,
        in outbox order, and `_hand_out` skips the rows paho still holds.
        """
        lost = [mid for mid, h in self._inflight.items() if h.qos == 0 and not _written(h.info)]
        if not lost:
            return
        first = min(self._inflight[mid].outbox_id for mid in lost)
        for mid in lost:
            del self._inflight[mid]
        self._last_handed = min(self._last_handed, first - 1)

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        prefix = command_topic(self.device.id, "")
        if msg.topic.startswith(prefix):
            self._on_command(msg.topic[len(prefix) :], bytes(msg.payload))
        elif msg.topic == f"{self.config.homeassistant_prefix}/status" and msg.payload == b"online":
            self._announce()

    def _announce(self) -> None:
        for topic_, payload in discovery_messages(
            self.config.homeassistant_prefix,
            self.device.id,
            self.device.site,
            self.device.room,
            self._firmware,
            self.config.thumbnails,
            labels=self._health_labels(),
            status_page=self._status_page(),
            climate=self._climate_entities,
        ):
            self.client.publish(topic_, payload, qos=1, retain=True)

    def _status_page(self) -> str | None:
        """The status page as seen from the broker's side of this connection."""
        if self._status_page_port is None or not self.local_ip:
            return None
        host = f"[{self.local_ip}]" if ":" in self.local_ip else self.local_ip
        return f"http://{host}:{self._status_page_port}/"

    # -- the thread ----------------------------------------------------------------

    def _run(self) -> None:
        # A bug in one iteration must not end publishing for good: log it, drop the
        # connection (paho keeps its queue) and carry on after a pause.
        while not self._stop.is_set():
            try:
                self._loop()
            except Exception:
                log.exception("publisher error; reconnecting")
                self._ready = False
                self.metrics.broker_connected.set(0)
                with contextlib.suppress(Exception):
                    self.client.disconnect()
                self._stop.wait(self.config.reconnect_max_s / 4)
        self._shutdown()

    def _loop(self) -> None:
        attempt = 0
        next_stats = time.monotonic() + self.config.stats_interval_s
        self._switch_protocol = False
        while not self._stop.is_set():
            if not self._ensure_connected(attempt):
                attempt += 1
                self._stop.wait(
                    backoff_delay(
                        attempt - 1,
                        self.config.reconnect_min_s,
                        self.config.reconnect_max_s,
                        self._rng,
                    )
                )
                continue
            rc = self.client.loop(timeout=LOOP_SLICE_S)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._switch_protocol:
                self._drop_connection()
                attempt += 1
                if not self._switch_protocol:
                    self._stop.wait(
                        backoff_delay(
                            attempt - 1,
                            self.config.reconnect_min_s,
                            self.config.reconnect_max_s,
                            self._rng,
                        )
                    )
                continue
            if self._ready:
                attempt = 0
                self._flush_acks()
                room = PREFETCH_WINDOWS * self.config.inflight_window - len(self._inflight)
                if room >= self.config.inflight_window or (room and self._wake.is_set()):
                    self._wake.clear()
                    if self._hand_out(room):
                        self._wake.set()  # the window is full: more may be waiting
                self._send_direct()
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.config.stats_interval_s
                    self.client.publish(topic(self.device.id, "stats"), self._stats(), qos=0)

    def _ensure_connected(self, attempt: int) -> bool:
        if self.client.is_connected() or self._socket_open():
            return True
        if self._switch_protocol:
            self._switch_protocol = False
            self._inflight.clear()
            self._last_handed = 0
            self._max_handed = 0
            self.client = self._new_client()
        try:
            self._connect()
        except (OSError, ValueError) as exc:
            if attempt == 0:
                log.warning("broker unreachable; will retry", extra={"error": str(exc)})
                self._record(False, f"broker unreachable, retrying: {exc}")
            return False
        return True

    def _socket_open(self) -> bool:
        return self.client.socket() is not None

    def _drop_connection(self) -> None:
        # paho has already closed the socket when loop() reports a failure.
        self._ready = False
        self.metrics.broker_connected.set(0)

    def _hand_out(self, room: int) -> bool:
        """Give paho up to `room` more outbox messages; True when all were taken."""
        pending = self.outbox.pending(self._last_handed, room)
        held: set[int] | None = None
        for msg in pending:
            if msg.id <= self._max_handed:  # only after a rewind: skip what paho still has
                if held is None:
                    held = {h.outbox_id for h in self._inflight.values()} | set(self._acked)
                if msg.id in held:
                    self._last_handed = msg.id
                    continue
            self._published_early.clear()
            self._handing = True
            try:
                info = self.client.publish(
                    msg.topic,
                    msg.payload,
                    qos=msg.qos,
                    retain=msg.retain,
                    properties=self._properties(msg),
                )
            finally:
                self._handing = False
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS and (
                msg.qos == 0 or info.rc != MQTTErrorCode.MQTT_ERR_NO_CONN
            ):
                # paho did not keep it (offline QoS 0, or its queue is full): leave
                # the cursor here so it is handed out again, in order, later.
                return False
            self._last_handed = msg.id
            self._max_handed = max(self._max_handed, msg.id)
            if info.mid in self._published_early:
                self._mark_done(msg.id)
            else:
                self._inflight[info.mid] = _Handed(msg.id, msg.qos, info)
        return len(pending) == room

    def _properties(self, msg: Outgoing) -> Properties | None:
        # Only binary payloads (thumbnails) need the seq beside them; JSON messages
        # carry it inside, and building paho Properties per message is costly.
        if self._protocol != MQTTProtocolVersion.MQTTv5 or msg.content_type is None:
            return None
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = msg.content_type
        if msg.seq is not None:
            props.UserProperty = ("seq", str(msg.seq))
        return props

    def _flush_acks(self, force: bool = False) -> None:
        """Delete acknowledged messages from the outbox, a batch at a time.

        Until then the read cursor (`_last_handed`) keeps them from being sent again
        in this process; after a crash they are sent once more (a QoS 1 redelivery).
        """
        if not self._acked:
            return
        due = time.monotonic() - self._first_ack_at >= ACK_FLUSH_S
        idle = not self._inflight  # everything handed out is acknowledged
        if force or due or idle or len(self._acked) >= ACK_FLUSH_BATCH:
            acked, self._acked = self._acked, []
            self.outbox.acknowledge(acked)
            self.metrics.last_publish.set(time.time())

    def _send_direct(self) -> None:
        while True:
            try:
                topic_, payload, qos, retain = self._direct.get_nowait()
            except queue.Empty:
                return
            self.client.publish(topic_, payload, qos=qos, retain=retain)

    def _shutdown(self) -> None:
        self._closing = True  # a disconnect now is the one asked for, not a fault
        if self._ready:
            offline = self._status("offline").model_dump_json()
            info = self.client.publish(topic(self.device.id, "status"), offline, qos=1, retain=True)
            deadline = time.monotonic() + 2.0
            while not info.is_published() and time.monotonic() < deadline:
                self.client.loop(timeout=LOOP_SLICE_S)
            self._flush_acks(force=True)
            self.client.disconnect()
            # disconnect() may already have written DISCONNECT and closed the socket;
            # looping on a closed client only makes paho log an error.
            if self.client.socket() is not None:
                self.client.loop(timeout=LOOP_SLICE_S)
        self._ready = False
        self.metrics.broker_connected.set(0)
        if self._link_state is not None:
            self._link_state.forget()

    def _record(self, connected: bool, detail: str) -> None:
        if self._link_state is not None:
            self._link_state.record(connected, detail)
