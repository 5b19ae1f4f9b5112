"""The bridge's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

from typing import get_args, get_type_hints

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from cloud_bridge.decode import KINDS, Rejected

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SIZES = (1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
DEAD_LETTER_REASONS: tuple[str, ...] = get_args(get_type_hints(Rejected)["reason"])
DATABASE_ERROR_KINDS = ("unavailable", "data")


class BridgeMetrics:
    """Every metric the bridge exports; /metrics serves `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "cultivai_bridge_messages_received",
            "Messages received from the broker, by topic kind.",
            ["kind"],
            registry=r,
        )
        self.stored = Counter(
            "cultivai_bridge_messages_stored",
            "Messages that added a row, by kind.",
            ["kind"],
            registry=r,
        )
        self.duplicates = Counter(
            "cultivai_bridge_duplicates",
            "Messages already stored (redeliveries, resends), by kind.",
            ["kind"],
            registry=r,
        )
        self.dead_letters = Counter(
            "cultivai_bridge_dead_letters",
            "Messages stored as dead letters, by reason.",
            ["reason"],
            registry=r,
        )
        self.acked = Counter(
            "cultivai_bridge_messages_acked",
            "Messages acknowledged to the broker after their batch committed.",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "cultivai_bridge_batch_seconds",
            "Time to write and commit one batch.",
            buckets=_SECONDS,
            registry=r,
        )
        self.batch_size = Histogram(
            "cultivai_bridge_batch_messages",
            "Messages per committed batch.",
            buckets=_SIZES,
            registry=r,
        )
        self.lag_seconds = Histogram(
            "cultivai_bridge_ingest_lag_seconds",
            "Time from a message's arrival at the bridge to the commit of its batch.",
            buckets=_SECONDS,
            registry=r,
        )
        self.inbox = Gauge(
            "cultivai_bridge_inbox_messages",
            "Messages received and waiting for the database writer.",
            registry=r,
        )
        self.db_errors = Counter(
            "cultivai_bridge_database_errors",
            "Failed batch writes, by kind (unavailable: retried; data: isolated).",
            ["kind"],
            registry=r,
        )
        self.db_up = Gauge(
            "cultivai_bridge_database_up", "1 while the last database write worked.", registry=r
        )
        self.replica_lag = Gauge(
            "cultivai_bridge_replica_lag_seconds",
            "How far the read replica replays behind the primary, at the last /readyz.",
            registry=r,
        )
        self.broker_up = Gauge(
            "cultivai_bridge_broker_connected",
            "1 while connected to the broker and subscribed.",
            registry=r,
        )
        self.holes = Gauge(
            "cultivai_bridge_seq_holes",
            "Holes in device seqs found by the last scan (waiting longer than the grace).",
            registry=r,
        )
        self.missing = Gauge(
            "cultivai_bridge_seq_missing",
            "Observations missing in those holes.",
            registry=r,
        )
        self.resend_requests = Counter(
            "cultivai_bridge_resend_requests",
            "Resend commands sent to devices.",
            registry=r,
        )
        self.resend_throttled = Counter(
            "cultivai_bridge_resend_throttled",
            "Resend commands not sent because this bridge's per-minute limit was reached.",
            registry=r,
        )
        # Every label value exists from the start at 0, so the first dead letter or
        # database error is an increase Prometheus can see (and alert on).
        for kind in KINDS:
            for counter in (self.received, self.stored, self.duplicates):
                counter.labels(kind)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for error in DATABASE_ERROR_KINDS:
            self.db_errors.labels(error)
