"""The agent's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class AgentMetrics:
    """Every metric the agent exports; the web app serves `registry` on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.captures = Counter(
            "cultivai_captures",
            "Capture attempts by result (ok, failed, dark).",
            ["result"],
            registry=r,
        )
        self.capture_seconds = Histogram(
            "cultivai_capture_seconds",
            "Time to take a photo (incl. photo light).",
            buckets=_SECONDS,
            registry=r,
        )
        self.analysis_seconds = Histogram(
            "cultivai_analysis_seconds",
            "Time to decode and measure a photo.",
            buckets=_SECONDS,
            registry=r,
        )
        self.inference_seconds = Histogram(
            "cultivai_inference_seconds",
            "Time for the plant-health model on one photo.",
            buckets=_SECONDS,
            registry=r,
        )
        self.outbox_depth = Gauge(
            "cultivai_outbox_depth", "Messages waiting to be published.", registry=r
        )
        self.outbox_dropped = Gauge(
            "cultivai_outbox_dropped",
            "Unsent messages dropped over the device's life to respect outbox_max_messages.",
            registry=r,
        )
        self.messages_rejected = Counter(
            "cultivai_messages_rejected",
            "Messages the broker refused (e.g. not authorised).",
            registry=r,
        )
        self.broker_connected = Gauge(
            "cultivai_broker_connected", "1 when connected to the MQTT broker.", registry=r
        )
        self.disk_free_bytes = Gauge(
            "cultivai_disk_free_bytes", "Free space on the data filesystem.", registry=r
        )
        self.images_pruned = Counter(
            "cultivai_images_pruned",
            "Photos deleted to respect quota or free space.",
            registry=r,
        )
        self.last_capture_timestamp = Gauge(
            "cultivai_last_capture_timestamp_seconds",
            "Unix time of the last stored capture.",
            registry=r,
        )
        self.model = Info("cultivai_model", "The plant-health model in use.", registry=r)
        for result in ("ok", "failed", "dark"):
            self.captures.labels(result=result)
