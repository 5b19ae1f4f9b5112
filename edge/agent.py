"""The agent: wires the parts in boot order and runs the capture loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from edge.camera import Camera, open_camera
from edge.clock import Clock, SystemClock
from edge.config import EdgeConfig
from edge.errors import CameraError, CultivaiError, ImageDecodeError, StorageError
from edge.gpio import Gpio
from edge.observe import Observer, load_model
from edge.protocol import Observation, topic
from edge.schedule import Schedule
from edge.store import Store, StoredImage

log = logging.getLogger(__name__)
FAILURES_BEFORE_ERROR = 3
RETENTION_EVERY = timedelta(hours=24)


@dataclass
class AgentStats:
    """What the agent has done since it started."""

    started_at: datetime
    captures_ok: int = 0
    captures_failed: int = 0
    skipped_dark: int = 0
    consecutive_failures: int = 0
    last_capture_at: datetime | None = None
    last_error: str | None = None
    camera_open: bool = False
    failures_by_reason: dict[str, int] = field(default_factory=dict)


class Agent:
    """One device's agent; `start()` opens the parts, `run()` captures until stopped."""

    def __init__(
        self,
        config: EdgeConfig,
        clock: Clock | None = None,
        pin_factory: Any = None,
        camera: Camera | None = None,
        on_observation: Callable[[Observation], None] | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self._pin_factory = pin_factory
        self.camera = camera
        self._on_observation = on_observation
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self._capture_requested = False
        self.stats = AgentStats(started_at=self.clock.now())
        self.store: Store
        self.gpio: Gpio
        self.observer: Observer
        self.schedule: Schedule

    def start(self) -> Agent:
        """Open the parts in boot order; only storage and GPIO failures are fatal."""
        cfg = self.config
        s = cfg.storage
        self.store = Store(
            s.dir,
            image_quota_bytes=s.image_quota_mb * 2**20,
            min_free_bytes=s.min_free_mb * 2**20,
            retention=timedelta(days=s.observation_retention_days),
        )
        self.gpio = Gpio(cfg.gpio, pin_factory=self._pin_factory)
        self.gpio.on_button(self.request_capture)
        classifier, model_block = load_model(cfg.model)
        self.observer = Observer(cfg, classifier, model_block)
        self.schedule = Schedule(cfg.schedule)
        if self.camera is None:
            self._open_camera()
        else:
            self.stats.camera_open = True
        self._update_status()
        log.info("agent started", extra={"device": cfg.device.id, "camera": cfg.camera.backend})
        return self

    def _open_camera(self) -> bool:
        try:
            self.camera = open_camera(self.config.camera, self.clock)
            self.stats.camera_open = True
        except CameraError as exc:
            self.camera = None
            self.stats.camera_open = False
            self._failed("camera", str(exc))
        return self.camera is not None

    def request_capture(self) -> None:
        """Take a photo now instead of waiting for the next slot (button, command)."""
        self._capture_requested = True
        self._wake.set()

    def stop(self) -> None:
        """Finish the capture in progress, then leave `run()`."""
        self.stop_event.set()
        self._wake.set()

    def run(self, max_captures: int | None = None, capture_first: bool = False) -> None:
        """Capture on schedule until stopped (or `max_captures` attempts)."""
        attempts = 0
        last_retention = self.clock.now() - RETENTION_EVERY
        self._capture_requested = capture_first
        while not self.stop_event.is_set():
            if not self._capture_requested:
                due = self.schedule.next_capture(self.clock.now())
                self.clock.wait_until(due, self._wake)
            self._wake.clear()
            self._capture_requested = False
            if self.stop_event.is_set():
                break
            self.capture_once()
            attempts += 1
            if self.clock.now() - last_retention >= RETENTION_EVERY:
                last_retention = self.clock.now()
                self._apply_retention()
            if max_captures is not None and attempts >= max_captures:
                break
        log.info("agent stopped", extra=self._stats_extra())

    def capture_once(self) -> Observation | None:
        """Capture, measure, store; failures are counted and reported, never raised."""
        if self.camera is None and not self._open_camera():
            return None
        assert self.camera is not None
        try:
            with self.gpio.lit_for_capture():
                frame = self.camera.capture()
            measured = self.observer.measure(frame)
        except (CameraError, ImageDecodeError) as exc:
            self._failed("camera", str(exc))
            return None
        if self.schedule.is_dark(measured.analysis.exposure.mean_luma):
            self.stats.skipped_dark += 1
            log.info(
                "frame skipped: too dark, grow lights look off",
                extra={"mean_luma": measured.analysis.exposure.mean_luma},
            )
            return None
        image = None
        if self.config.storage.keep_images:
            image = StoredImage(self.observer.encode_photo(frame), self.observer.overlay(measured))
        outbox = topic(self.config.device.id, "observation") if self.config.mqtt.enabled else None
        try:
            obs = self.store.add_observation(
                lambda seq, stored: self.observer.observation(measured, seq, stored), image, outbox
            )
        except StorageError as exc:
            self._failed("storage", str(exc))
            return None
        self.stats.captures_ok += 1
        self.stats.consecutive_failures = 0
        self.stats.last_capture_at = obs.captured_at
        self._update_status()
        log.info(
            "observation stored",
            extra={
                "seq": obs.seq,
                "cover_pct": obs.canopy.cover_pct,
                "health": obs.health.label if obs.health else None,
                "photo_kept": obs.image.stored,
            },
        )
        if self._on_observation is not None:
            self._on_observation(obs)
        return obs

    def _failed(self, reason: str, message: str) -> None:
        self.stats.captures_failed += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = f"{reason}: {message}"
        self.stats.failures_by_reason[reason] = self.stats.failures_by_reason.get(reason, 0) + 1
        log.error("capture failed", extra={"reason": reason, "error": message})
        self._update_status()

    def _apply_retention(self) -> None:
        try:
            removed = self.store.prune_old_observations(self.clock.now())
        except CultivaiError as exc:
            log.error("retention clean-up failed", extra={"error": str(exc)})
            return
        if removed:
            log.info("old measurements deleted", extra={"rows": removed})

    def _update_status(self) -> None:
        if self.stats.consecutive_failures >= FAILURES_BEFORE_ERROR:
            self.gpio.set_status("error")
        elif self.stats.consecutive_failures or self._model_missing():
            self.gpio.set_status("degraded")
        else:
            self.gpio.set_status("ok")

    def _model_missing(self) -> bool:
        return self.config.model.enabled and self.observer.classifier is None

    def _stats_extra(self) -> dict[str, object]:
        s = self.stats
        return {
            "captures_ok": s.captures_ok,
            "captures_failed": s.captures_failed,
            "skipped_dark": s.skipped_dark,
        }

    def close(self) -> None:
        """Release the camera, pins and database."""
        if self.camera is not None:
            self.camera.close()
        if hasattr(self, "gpio"):
            self.gpio.close()
        if hasattr(self, "store"):
            self.store.close()
