"""The agent: wires the parts in boot order and runs the capture loop."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from edge import __version__
from edge.alerts import AlertEngine, AlertEvent, alert_message, alert_row
from edge.baseline import GrowBaseline
from edge.camera import Camera, open_camera
from edge.clock import Clock, SystemClock
from edge.commands import CommandRunner
from edge.config import EdgeConfig
from edge.device_info import cpu_temperature_c, disk_free_bytes
from edge.errors import CameraError, CultivaiError, ImageDecodeError, StorageError
from edge.gpio import Gpio
from edge.metrics import AgentMetrics
from edge.mqtt import MqttLink
from edge.observe import Measured, Observer, load_model, thumbnail_jpeg
from edge.protocol import (
    CommandResult,
    Observation,
    SetScheduleCommand,
    Stats,
    Status,
    Thumbnail,
    topic,
)
from edge.schedule import Schedule
from edge.store import Store, StoredImage, Tx
from edge.supervise import Supervisor
from edge.systemd import Notifier
from edge.web.app import create_app
from edge.web.device import DeviceStatus
from edge.web.server import WebServer

log = logging.getLogger(__name__)
FAILURES_BEFORE_ERROR = 3
RETENTION_EVERY = timedelta(hours=24)
PAGE_PROBE_TIMEOUT_S = 5.0


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
        serve_web: bool = False,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.notifier = notifier or Notifier(None)
        self.clock = clock or SystemClock()
        self._pin_factory = pin_factory
        self.camera = camera
        self._on_observation = on_observation
        self.stop_event = threading.Event()
        self._wake = threading.Event()
        self._capture_requested = False
        self._capture_lock = threading.Lock()
        self.stats = AgentStats(started_at=self.clock.now())
        self.metrics = AgentMetrics()
        self.supervisor = Supervisor(self.metrics.registry)
        self.link: MqttLink | None = None
        self._serve_web = serve_web
        self.web: WebServer | None = None
        self.commands: CommandRunner | None = None
        self.store: Store
        self.gpio: Gpio
        self.observer: Observer
        self.schedule: Schedule
        self.alerts: AlertEngine
        self.baseline: GrowBaseline

    # -- boot ----------------------------------------------------------------------

    def start(self) -> Agent:
        """Open the parts in boot order; only storage and GPIO failures are fatal."""
        cfg = self.config
        s = cfg.storage
        self.store = Store(
            s.dir,
            image_quota_bytes=s.image_quota_mb * 2**20,
            min_free_bytes=s.min_free_mb * 2**20,
            retention=timedelta(days=s.observation_retention_days),
            max_outbox=cfg.mqtt.outbox_max_messages,
        )
        self.gpio = Gpio(cfg.gpio, pin_factory=self._pin_factory)
        self.gpio.on_button(self.request_capture)
        classifier, model_block = load_model(cfg.model)
        self.baseline = GrowBaseline.load(self.store.engine, cfg.health.baseline_captures)
        self.observer = Observer(cfg, classifier, model_block, self.baseline)
        self._report_model()
        self.schedule = Schedule(cfg.schedule)
        self.alerts = AlertEngine(cfg.alerts, self.store.open_alerts(), cfg.health)
        warmup = cfg.alerts.baseline_captures + 2 * cfg.alerts.problem_consecutive
        self.alerts.warm_up(list(reversed(self.store.recent(warmup))))
        self.metrics.watch_device(
            lambda: self.stats.camera_open, lambda: len(self.store.open_alerts())
        )
        if self.camera is None:
            self._open_camera()
        else:
            self.stats.camera_open = True
        if cfg.mqtt.enabled:
            self.commands = CommandRunner(cfg.device.id, self, self._answer, self.supervisor)
            self.commands.start()
            self.link = MqttLink(
                cfg.mqtt,
                cfg.device,
                self.store.open_outbox(),
                status=self.status_message,
                stats=self.stats_payload,
                on_command=self.commands.submit,
                metrics=self.metrics,
                firmware=__version__,
                health_labels=self._health_labels,
                status_page_port=cfg.web.port if cfg.web.enabled else None,
            )
            self.link.start()
        if self._serve_web and cfg.web.enabled:
            self._start_web()
        self._update_status()
        log.info("agent started", extra={"device": cfg.device.id, "camera": cfg.camera.backend})
        # Ready even without a camera: the page and the broker say what is wrong, and
        # each capture tries to open it again, where a failed start would loop.
        camera = "camera open" if self.stats.camera_open else f"no camera: {self.stats.last_error}"
        self.notifier.ready(f"started; {camera}")
        return self

    def _start_web(self) -> None:
        cfg = self.config
        app = create_app(
            cfg.web,
            cfg.storage.dir,
            self.store,
            self,
            self.metrics,
            clock=self.clock,
            timezone=cfg.schedule.timezone,
        )
        self.web = WebServer(app, cfg.web.host, cfg.web.port, cfg.web.threads).start()
        log.info("status page serving", extra={"url": self.web.url})

    def _open_camera(self) -> bool:
        try:
            self.camera = open_camera(self.config.camera, self.clock)
            self.stats.camera_open = True
        except CameraError as exc:
            self.camera = None
            self.stats.camera_open = False
            self._failed("camera", str(exc))
        return self.camera is not None

    def _health_labels(self) -> tuple[str, ...]:
        """The verdicts the current model can give (none without a model)."""
        return tuple(getattr(self.observer.classifier, "labels", ()))

    def _report_model(self) -> None:
        m = self.observer.model
        self.metrics.model.info(
            {
                "name": m.name or "",
                "version": m.version or "",
                "backend": m.backend or "",
                "error": m.error or "",
            }
        )

    # -- the loop ------------------------------------------------------------------

    def request_capture(self) -> None:
        """Take a photo now instead of waiting for the next slot (button, command)."""
        self._capture_requested = True
        self._wake.set()

    def stop(self) -> None:
        """Finish the capture in progress, then leave `run()`."""
        self.stop_event.set()
        self._wake.set()
        self.notifier.stopping("stopping: finishing the capture in progress")

    def run(self, max_captures: int | None = None, capture_first: bool = False) -> None:
        """Capture on schedule until stopped (or `max_captures` attempts)."""
        attempts = 0
        last_retention = self.clock.now() - RETENTION_EVERY
        self._capture_requested = self._capture_requested or capture_first
        while not self.stop_event.is_set():
            self._show_progress()
            if not self._capture_requested:
                due = self.schedule.next_capture(self.clock.now())
                self._wait_until(due)
            self._wake.clear()
            if self.stop_event.is_set():
                break
            if not self._capture_requested and self.clock.now() < due:
                continue  # woken to re-read the schedule
            self._capture_requested = False
            self.capture_once()
            attempts += 1
            if self.clock.now() - last_retention >= RETENTION_EVERY:
                last_retention = self.clock.now()
                self._apply_retention()
            if max_captures is not None and attempts >= max_captures:
                break
        log.info("agent stopped", extra=self._stats_extra())

    def _wait_until(self, due: datetime) -> None:
        """Wait for the next capture, feeding systemd's watchdog while waiting.

        Only this loop pings: a capture that hangs (camera, model, disk) stops the
        pings and systemd restarts the agent once WatchdogSec passes.
        """
        every = self.notifier.ping_interval_s(self.config.schedule.interval_s)
        if every is None:
            self.clock.wait_until(due, self._wake)
            return
        while True:
            step = min(due, self.clock.now() + timedelta(seconds=every))
            if self.clock.wait_until(step, self._wake) or self.clock.now() >= due:
                return
            self._show_progress()

    def _show_progress(self) -> None:
        """A watchdog ping, when the status page (if served) answers too."""
        if self.web is not None and not _page_answers(self.web.host, self.web.port):
            log.error("status page does not answer; not feeding the watchdog")
            return
        self.notifier.watchdog()

    def capture_once(self) -> Observation | None:
        """Capture, measure, store; failures are counted and reported, never raised."""
        with self._capture_lock:
            return self._capture()

    def _capture(self) -> Observation | None:
        if self.camera is None and not self._open_camera():
            return None
        assert self.camera is not None
        try:
            started = time.perf_counter()
            with self.gpio.lit_for_capture():
                frame = self.camera.capture()
            self.metrics.capture_seconds.observe(time.perf_counter() - started)
            measured = self.observer.measure(frame)
        except (CameraError, ImageDecodeError) as exc:
            self._failed("camera", str(exc))
            return None
        self.metrics.analysis_seconds.observe(measured.analysis_s)
        if measured.health is not None:
            self.metrics.inference_seconds.observe(measured.inference_s)
        if self.schedule.is_dark(measured.analysis.exposure.mean_luma):
            self.stats.skipped_dark += 1
            self.metrics.captures.labels(result="dark").inc()
            self.notifier.status(f"{_utc(measured.frame.captured_at)}: frame skipped, too dark")
            log.info(
                "frame skipped: too dark, grow lights look off",
                extra={"mean_luma": measured.analysis.exposure.mean_luma},
            )
            return None
        image = None
        if self.config.storage.keep_images:
            image = StoredImage(self.observer.encode_photo(frame), self.observer.overlay(measured))
        applied: list[tuple[AlertEvent, int]] = []
        try:
            obs = self.store.add_observation(
                lambda seq, stored: self.observer.observation(measured, seq, stored),
                image,
                lambda tx, o: self._in_transaction(tx, o, measured, applied),
            )
        except StorageError as exc:
            self._failed("storage", str(exc))
            return None
        for event, alert_id in applied:
            self.alerts.applied(event, alert_id)
        if measured.sample is not None and self.baseline.wants(measured.sample):
            self.baseline.add(replace(measured.sample, seq=obs.seq))
        self._stored(obs)
        return obs

    def _in_transaction(
        self, tx: Tx, obs: Observation, measured: Measured, applied: list[tuple[AlertEvent, int]]
    ) -> None:
        """Outbox messages and alerts committed together with the observation."""
        device_id = self.config.device.id
        publish = self.config.mqtt.enabled
        if publish:
            tx.enqueue(topic(device_id, "observation"), obs.model_dump_json(), seq=obs.seq)
            if self.config.mqtt.thumbnails:
                jpeg = thumbnail_jpeg(measured.rgb, self.config.mqtt.thumbnail_max_side)
                # Base64Bytes fields take base64 on input and hold the decoded bytes.
                thumb = Thumbnail(device_id=device_id, seq=obs.seq, data=base64.b64encode(jpeg))
                tx.enqueue(topic(device_id, "thumbnail"), thumb.model_dump_json(), seq=obs.seq)
                if self.config.mqtt.homeassistant_discovery:
                    # Home Assistant's image entity wants the bare JPEG; it is state,
                    # not history, so the newest one is retained and older ones dropped.
                    tx.enqueue(
                        f"{topic(device_id, 'thumbnail')}/raw",
                        jpeg,
                        qos=0,
                        retain=True,
                        seq=obs.seq,
                        content_type="image/jpeg",
                    )
        if measured.sample is not None and self.baseline.wants(measured.sample):
            tx.session.add(replace(measured.sample, seq=obs.seq).row())
        for event in self.alerts.evaluate(obs):
            if event.action == "raise":
                alert_id = tx.open_alert(alert_row(event, obs.captured_at, obs.seq))
            else:
                existing = self.alerts.open_id(event)
                if existing is None:
                    continue
                alert_id = existing
                tx.close_alert(alert_id, obs.captured_at, obs.seq)
            applied.append((event, alert_id))
            log.warning(
                f"alert {event.action}: {event.message}",
                extra={"alert_id": alert_id, "kind": event.kind, "seq": obs.seq},
            )
            if publish:
                message = alert_message(device_id, alert_id, event, obs.captured_at, obs.seq)
                tx.enqueue(topic(device_id, "alert"), message.model_dump_json())

    def _stored(self, obs: Observation) -> None:
        self.stats.captures_ok += 1
        self.stats.consecutive_failures = 0
        self.stats.last_capture_at = obs.captured_at
        self.metrics.captures.labels(result="ok").inc()
        self.metrics.last_capture_timestamp.set(obs.captured_at.timestamp())
        self._update_status()
        self.notifier.status(
            f"last capture {_utc(obs.captured_at)}: seq {obs.seq}, "
            f"cover {obs.canopy.cover_pct:.1f} %" + (f", {obs.health.label}" if obs.health else "")
        )
        if self.link is not None:
            self.link.notify()
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

    def _failed(self, reason: str, message: str) -> None:
        self.stats.captures_failed += 1
        self.stats.consecutive_failures += 1
        self.stats.last_error = f"{reason}: {message}"
        self.stats.failures_by_reason[reason] = self.stats.failures_by_reason.get(reason, 0) + 1
        self.metrics.captures.labels(result="failed").inc()
        log.error("capture failed", extra={"reason": reason, "error": message})
        self._update_status()
        self.notifier.status(f"{_utc(self.clock.now())}: capture failed ({reason}): {message}")

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

    # -- status --------------------------------------------------------------------

    def status(self) -> DeviceStatus:
        """The agent's state for the grower's page."""
        s, m, d = self.stats, self.observer.model, self.config.device
        return DeviceStatus(
            device_id=d.id,
            site=d.site,
            room=d.room,
            firmware=__version__,
            started_at=s.started_at,
            cpu_temp_c=cpu_temperature_c(),
            broker_connected=self.link.connected if self.link else None,
            model_name=m.name,
            model_version=m.version,
            model_backend=m.backend,
            model_error=m.error,
            camera_open=s.camera_open,
            last_capture_at=s.last_capture_at,
            last_error=s.last_error,
            captures_ok=s.captures_ok,
            captures_failed=s.captures_failed,
            skipped_dark=s.skipped_dark,
            workers_up=self.supervisor.all_up(),
            worker_problems=self.supervisor.problems(),
        )

    def status_message(self, state: str) -> Status:
        """The retained presence message (also the Last Will when offline)."""
        m = self.observer.model
        return Status(
            device_id=self.config.device.id,
            state="online" if state == "online" else "offline",
            firmware=__version__,
            model_version=m.version,
            model_backend=m.backend,
            ip=self.link.local_ip if self.link else None,
            started_at=self.stats.started_at,
        )

    def stats_message(self) -> Stats:
        """Periodic health figures."""
        store = self.store.stats()
        free = disk_free_bytes(self.config.storage.dir)
        self.metrics.disk_free_bytes.set(free)
        return Stats(
            device_id=self.config.device.id,
            at=datetime.now(timezone.utc),
            uptime_s=round((self.clock.now() - self.stats.started_at).total_seconds(), 1),
            disk_free_bytes=free,
            cpu_temp_c=cpu_temperature_c(),
            outbox_depth=store.outbox_depth,
            outbox_dropped=store.outbox_dropped,
            last_seq=store.last_seq or None,
            last_capture_at=self.stats.last_capture_at,
            captures_ok=self.stats.captures_ok,
            captures_failed=self.stats.captures_failed,
            skipped_dark=self.stats.skipped_dark,
            images_pruned=store.images_pruned,
            open_alerts=len(self.store.open_alerts()),
        )

    def stats_payload(self) -> bytes:
        """Stats as JSON bytes for the broker."""
        return self.stats_message().model_dump_json().encode()

    # -- commands ------------------------------------------------------------------

    def _answer(self, result: CommandResult) -> None:
        self.store.enqueue(topic(self.config.device.id, "cmd_result"), result.model_dump_json())
        if self.link is not None:
            self.link.notify()

    def command_capture(self) -> dict[str, Any]:
        """Capture now (between scheduled captures)."""
        obs = self.capture_once()
        if obs is None:
            raise CameraError(f"capture failed: {self.stats.last_error or 'frame too dark'}")
        return {"seq": obs.seq}

    def command_reload_model(self) -> dict[str, Any]:
        """Load the model again; on failure the previous model stays in use."""
        classifier, block = load_model(self.config.model)
        if classifier is None and self.config.model.enabled:
            raise CultivaiError(f"model not reloaded, previous one kept: {block.error}")
        with self._capture_lock:
            self.observer.classifier = classifier
            self.observer.model = block
        self._report_model()
        self._update_status()
        return {"name": block.name, "version": block.version, "backend": block.backend}

    def command_resend(self, from_seq: int, to_seq: int) -> dict[str, Any]:
        """Queue stored observations in a seq range again; say which are gone."""
        rows = self.store.observations_between(from_seq, to_seq)
        with self.store.transaction() as tx:
            for seq, payload in rows:
                tx.enqueue(topic(self.config.device.id, "observation"), payload, seq=seq)
        found = {seq for seq, _ in rows}
        missing = [s for s in range(from_seq, to_seq + 1) if s not in found]
        if self.link is not None:
            self.link.notify()
        return {"resent": len(rows), "missing": _ranges(missing)}

    def reset_baseline(self) -> None:
        """A new grow: forget the baseline; the next usable captures set a new one."""
        self.baseline.reset(self.store.engine)
        self.observer.background.reset()
        log.info("grow baseline reset; the next captures set a new one")

    def command_reset_baseline(self) -> dict[str, Any]:
        """The reset-baseline command."""
        self.reset_baseline()
        return {"baseline_captures": self.baseline.size}

    def command_set_schedule(self, cmd: SetScheduleCommand) -> dict[str, Any]:
        """Change interval or photoperiod until the next restart."""
        changes = cmd.model_dump(exclude={"request_id"}, exclude_none=True)
        merged = {**self.config.schedule.model_dump(), **changes}
        new = type(self.config.schedule).model_validate(merged)  # raises ValueError
        self.schedule = Schedule(new, zone=self.schedule.zone)
        self._wake.set()  # re-read the schedule now
        log.info("schedule changed by command", extra=changes)
        return {
            "interval_s": new.interval_s,
            "lights_on": new.lights_on.isoformat() if new.lights_on else None,
            "lights_off": new.lights_off.isoformat() if new.lights_off else None,
        }

    # -- shutdown ------------------------------------------------------------------

    def close(self) -> None:
        """Stop serving and publishing, release the camera, pins and database."""
        if self.web is not None:
            self.web.stop()
        if self.link is not None:
            self.link.stop()
        if self.commands is not None:
            self.commands.stop()
        if self.camera is not None:
            self.camera.close()
        if hasattr(self, "gpio"):
            self.gpio.close()
        if hasattr(self, "store"):
            self.store.close()


def _page_answers(host: str, port: int) -> bool:
    """True when the status page's /healthz answers 200 within a few seconds."""
    import http.client

    probe = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    conn = http.client.HTTPConnection(probe, port, timeout=PAGE_PROBE_TIMEOUT_S)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _utc(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ranges(seqs: list[int]) -> list[list[int]]:
    """[1, 2, 3, 7] -> [[1, 3], [7, 7]]."""
    out: list[list[int]] = []
    for s in seqs:
        if out and out[-1][1] == s - 1:
            out[-1][1] = s
        else:
            out.append([s, s])
    return out
