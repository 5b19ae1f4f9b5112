"""The database writer thread: batch received messages, commit, and only then have them acked.

A batch closes when it holds `max_messages` or its first message has waited
`max_seconds`. While the database is unreachable the writer keeps the batch, backs off
and tries again; nothing is acknowledged, so the broker holds (and after a crash
redelivers) every message. A batch the database refuses for its content is written
again one message at a time, and the message it refuses becomes a dead letter.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable

from cloud_bridge.broker import Inbound
from cloud_bridge.config import BatchingConfig
from cloud_bridge.database import is_transient
from cloud_bridge.decode import Limits, Rejected, decode, parse_topic, safe_text
from cloud_bridge.errors import BridgeError
from cloud_bridge.metrics import BridgeMetrics
from cloud_bridge.store import BatchResult, Envelope, FleetStore

log = logging.getLogger("cloud_bridge.writer")


class BatchWriter:
    """Turns the inbox into committed batches and hands committed messages to `acknowledge`."""

    def __init__(
        self,
        store: FleetStore,
        limits: Limits,
        batching: BatchingConfig,
        retry_max_s: float,
        acknowledge: Callable[[list[Inbound]], None],
        metrics: BridgeMetrics,
    ) -> None:
        self.store = store
        self.limits = limits
        self.batching = batching
        self.retry_max_s = retry_max_s
        self.acknowledge = acknowledge
        self.metrics = metrics
        self.inbox: queue.Queue[Inbound] = queue.Queue()
        self.failure: BaseException | None = None

    def put(self, message: Inbound) -> None:
        """Queue a received message for the next batch (called on the network thread)."""
        self.inbox.put(message)

    def run(self, stop: threading.Event) -> None:
        """Write batches until `stop`; a message taken from the inbox is acked only once stored."""
        try:
            while not stop.is_set():
                batch = self._collect(stop)
                if batch:
                    self._commit(batch, stop)
        except Exception as exc:
            self.failure = exc
            log.exception("database writer stopped on an error it cannot get past")

    def _collect(self, stop: threading.Event) -> list[Inbound]:
        try:
            first = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = first.arrived + self.batching.max_seconds
        while len(batch) < self.batching.max_messages and not stop.is_set():
            try:
                batch.append(self.inbox.get_nowait())  # a backlog fills the batch at once
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=min(remaining, 0.2)))
            except queue.Empty:
                continue
        return batch

    def _commit(self, batch: list[Inbound], stop: threading.Event) -> bool:
        """Write `batch` until it commits (True) or `stop` is set while the database is down."""
        envelopes = [self._envelope(m) for m in batch]
        delay = 0.1
        failures = 0
        while True:
            started = time.monotonic()
            try:
                result = self._write(envelopes)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                failures += 1
                self.metrics.db_errors.labels("unavailable").inc()
                self.metrics.db_up.set(0)
                wait = delay * random.uniform(0.8, 1.2)
                log.warning(
                    "database unavailable; holding the batch unacknowledged",
                    extra={
                        "messages": len(batch),
                        "attempt": failures,
                        "retry_s": round(wait, 2),
                        "error": safe_text(str(exc).splitlines()[0] if str(exc) else repr(exc)),
                    },
                )
                if stop.wait(wait):
                    return False
                delay = min(delay * 2, self.retry_max_s)
                continue
            break
        done = time.monotonic()
        if failures:
            log.info("database reachable again", extra={"attempts": failures + 1})
        self.metrics.db_up.set(1)
        self._record(batch, result, done - started, done)
        self.acknowledge(batch)
        return True

    def _envelope(self, message: Inbound) -> Envelope:
        decoded = decode(message.topic, message.payload, self.limits)
        parsed = parse_topic(message.topic)
        self.metrics.received.labels(parsed[1] if parsed else "unknown").inc()
        if isinstance(decoded, Rejected):
            log.warning(
                "dead letter",
                extra={
                    "topic": safe_text(message.topic, 200),
                    "reason": decoded.reason,
                    "error": decoded.error,
                },
            )
        return Envelope(message.topic, message.payload, message.received_at, decoded)

    def _write(self, envelopes: list[Envelope]) -> BatchResult:
        try:
            return self.store.write(envelopes)
        except Exception as exc:
            if is_transient(exc):
                raise
            self.metrics.db_errors.labels("data").inc()
            log.error(
                "database refused a batch; writing its messages one at a time",
                extra={"error": safe_text(str(exc))},
            )
        result = BatchResult()
        for env in envelopes:
            try:
                one = self.store.write([env])
            except Exception as exc:
                if is_transient(exc):
                    raise
                error = safe_text(f"database refused it: {exc}")
                try:
                    self.store.write_dead_letter(env, error)
                except Exception as dead_exc:
                    if is_transient(dead_exc):
                        raise
                    raise BridgeError(
                        f"cannot store a dead letter ({dead_exc}); is the schema migrated "
                        "and may this user write to it?"
                    ) from dead_exc
                one = BatchResult()
                one.dead_letters["database"] += 1
            result.stored.update(one.stored)
            result.duplicates.update(one.duplicates)
            result.dead_letters.update(one.dead_letters)
        return result

    def _record(
        self, batch: list[Inbound], result: BatchResult, seconds: float, now: float
    ) -> None:
        m = self.metrics
        m.batch_seconds.observe(seconds)
        m.batch_size.observe(len(batch))
        for message in batch:
            m.lag_seconds.observe(now - message.arrived)
        for kind, n in result.stored.items():
            m.stored.labels(kind).inc(n)
        for kind, n in result.duplicates.items():
            m.duplicates.labels(kind).inc(n)
        for reason, n in result.dead_letters.items():
            m.dead_letters.labels(reason).inc(n)
        m.acked.inc(sum(1 for message in batch if message.qos > 0))
        m.inbox.set(self.inbox.qsize())
