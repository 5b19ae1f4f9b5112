"""The agent's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from edge import __version__
from edge.device_info import cpu_temperature_c
from edge.protocol import ClimateBlock

_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class OutboxView(Protocol):
    """What the metrics read from the outbox at scrape time."""

    def depth(self) -> int:
        """Messages waiting."""
        ...

    def oldest_age_s(self) -> float:
        """Seconds the oldest waiting message has waited."""
        ...

    def dropped(self) -> int:
        """Messages dropped over the device's life."""
        ...


class _OutboxCollector(Collector):
    """Reads the outbox when scraped, so a broker outage cannot freeze the numbers."""

    def __init__(self) -> None:
        self.outbox: OutboxView | None = None

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The outbox metrics, read from the database now."""
        depth = age = dropped = 0.0
        if self.outbox is not None:
            depth = self.outbox.depth()
            age = self.outbox.oldest_age_s()
            dropped = self.outbox.dropped()
        yield GaugeMetricFamily(
            "cultivai_outbox_depth", "Messages waiting to be published.", value=depth
        )
        yield GaugeMetricFamily(
            "cultivai_outbox_oldest_age_seconds",
            "How long the oldest unsent message has waited (0 when none waits).",
            value=age,
        )
        yield CounterMetricFamily(
            "cultivai_outbox_dropped",
            "Unsent messages dropped over the device's life to respect outbox_max_messages.",
            value=dropped,
        )


def _nan_if_none(read: Callable[[], float | None]) -> Callable[[], float]:
    def value() -> float:
        v = read()
        return math.nan if v is None else float(v)

    return value


class AgentMetrics:
    """Every metric the agent exports; the web app serves `registry` on /metrics."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # process_* (RSS, CPU, start time, open fds)
        PlatformCollector(registry=r)  # python_info
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
        self._outbox = _OutboxCollector()
        r.register(self._outbox)
        self.messages_rejected = Counter(
            "cultivai_messages_rejected",
            "Messages the broker refused (e.g. not authorised).",
            registry=r,
        )
        self.broker_connected = Gauge(
            "cultivai_broker_connected", "1 when connected to the MQTT broker.", registry=r
        )
        self.last_publish = Gauge(
            "cultivai_last_publish_timestamp_seconds",
            "Unix time the broker last took an outbox message (0 before the first).",
            registry=r,
        )
        self.last_publish_age = Gauge(
            "cultivai_last_publish_age_seconds",
            "Seconds since the broker last took an outbox message (NaN before the first).",
            registry=r,
        )
        self.last_publish_age.set_function(self._publish_age)
        self.disk_free_bytes = Gauge(
            "cultivai_disk_free_bytes", "Free space on the data filesystem.", registry=r
        )
        self.cpu_temperature = Gauge(
            "cultivai_cpu_temperature_celsius",
            "SoC temperature (NaN where the kernel reports none).",
            registry=r,
        )
        self.cpu_temperature.set_function(_nan_if_none(cpu_temperature_c))
        self.camera_up = Gauge(
            "cultivai_camera_up", "1 when the camera is open and taking photos.", registry=r
        )
        self.open_alerts = Gauge(
            "cultivai_open_alerts", "Alerts raised and not yet cleared.", registry=r
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
        self.build = Info("cultivai_build", "The firmware build running.", registry=r)
        self.build.info({"version": __version__, "python": platform.python_version()})
        for result in ("ok", "failed", "dark"):
            self.captures.labels(result=result)
        self.sensor_failures = Counter(
            "cultivai_sensor_failures",
            "Failed sensor readings by sensor role (climate, co2, thermal) and reason "
            "(io, crc, stuck, out_of_range, unavailable, error).",
            ["sensor", "reason"],
            registry=r,
        )
        self.climate = Gauge(
            "cultivai_climate",
            "Latest climate reading by quantity (air_temp_celsius, leaf_temp_celsius, "
            "rh_percent, co2_ppm, air_vpd_kpa, leaf_vpd_kpa); NaN when not measured.",
            ["quantity"],
            registry=r,
        )
        self.sensor_up = Gauge(
            "cultivai_sensor_up",
            "1 when the sensor's last reading was good, 0 when it failed; absent when not fitted.",
            ["sensor"],
            registry=r,
        )

    def sensor_failed(self, sensor: str, reason: str) -> None:
        """Count one failed sensor reading."""
        self.sensor_failures.labels(sensor=sensor, reason=reason).inc()

    def record_climate(self, climate: ClimateBlock) -> None:
        """Set the climate gauges from one capture's block."""
        values = {
            "air_temp_celsius": climate.air_temp_c,
            "leaf_temp_celsius": climate.leaf_temp_c,
            "rh_percent": climate.rh_pct,
            "co2_ppm": climate.co2_ppm,
            "air_vpd_kpa": climate.air_vpd_kpa,
            "leaf_vpd_kpa": climate.leaf_vpd_kpa,
        }
        for quantity, value in values.items():
            self.climate.labels(quantity=quantity).set(math.nan if value is None else value)
        for sensor, state in climate.sensors.items():
            if state == "not fitted":
                continue
            self.sensor_up.labels(sensor=sensor).set(1.0 if state in ("ok", "warming up") else 0.0)

    def _publish_age(self) -> float:
        at = self.last_publish._value.get()
        return time.time() - at if at else math.nan

    def watch_outbox(self, outbox: OutboxView) -> None:
        """Report this outbox's depth, oldest age and drops, read at every scrape."""
        self._outbox.outbox = outbox

    def watch_disk(self, free_bytes: Callable[[], int]) -> None:
        """Read free space at every scrape (not only when a stats message goes out, so a
        device without a broker, or before its first stats, does not show 0)."""
        self.disk_free_bytes.set_function(lambda: float(free_bytes()))

    def watch_device(self, camera_up: Callable[[], bool], open_alerts: Callable[[], int]) -> None:
        """Read camera state and open-alert count from the agent at every scrape."""
        self.camera_up.set_function(lambda: 1.0 if camera_up() else 0.0)
        self.open_alerts.set_function(lambda: float(open_alerts()))
