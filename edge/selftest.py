"""`cultivai-edge selftest`: each part of the device checked, ok or why not."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from edge.broker_check import LINK_STATE_FILE, running_agent_link, try_connect
from edge.camera import open_camera
from edge.clock import SystemClock
from edge.config import EdgeConfig
from edge.config_checks import path_problems
from edge.errors import CultivaiError
from edge.gpio import Gpio
from edge.observe import Observer, load_model
from edge.store import Store

State = Literal["ok", "fail", "skip"]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One part's result."""

    part: str
    state: State
    detail: str

    def as_dict(self) -> dict[str, str]:
        """Plain form for JSON output."""
        return {"part": self.part, "state": self.state, "detail": self.detail}


def _check(part: str, fn: Callable[[], tuple[State, str]]) -> CheckResult:
    try:
        state, detail = fn()
    except (CultivaiError, OSError, ValueError) as exc:
        return CheckResult(part, "fail", str(exc))
    return CheckResult(part, state, detail)


def run_selftest(config: EdgeConfig, pin_factory: Any = None) -> list[CheckResult]:
    """Check config paths, storage, camera, model, broker (a real CONNECT) and GPIO.

    Nothing is stored or published.
    """
    classifier, model_block = load_model(config.model)
    observer = Observer(config, classifier, model_block)

    def storage() -> tuple[State, str]:
        store = Store(config.storage.dir)
        try:
            verdict = store.integrity_check()
            stats = store.stats()
        finally:
            store.close()
        if verdict != "ok":
            return "fail", f"database integrity check: {verdict}"
        free_mb = shutil.disk_usage(config.storage.dir).free // 2**20
        return "ok", (
            f"{config.storage.dir}: {stats.observations} observations, last seq "
            f"{stats.last_seq}, {free_mb} MB free"
        )

    def camera() -> tuple[State, str]:
        cam = open_camera(config.camera, SystemClock())
        try:
            frame = cam.capture()
        finally:
            cam.close()
        measured = observer.measure(frame)
        e = measured.analysis.exposure
        return "ok", (
            f"{config.camera.backend}: {frame.width}x{frame.height}, exposure {e.verdict}, "
            f"mean brightness {e.mean_luma:.0f}, canopy {measured.analysis.canopy.cover_pct:.1f}%"
        )

    def model() -> tuple[State, str]:
        if not config.model.enabled:
            return "skip", "disabled in config"
        if classifier is None:
            return "fail", model_block.error or "not loaded"
        import numpy as np

        pred = classifier.classify(np.full((224, 224, 3), 96, np.uint8))
        return "ok", (
            f"{model_block.name} {model_block.version} on {model_block.backend}; "
            f"test inference gave {pred.label}"
        )

    def broker() -> tuple[State, str]:
        if not config.mqtt.enabled:
            return "skip", "mqtt.enabled is false"
        running = running_agent_link(config.storage.dir / LINK_STATE_FILE)
        if running is not None:  # a second CONNECT could take the agent's connection over
            return ("ok" if running.accepted else "fail"), running.detail
        result = try_connect(config.mqtt, f"{config.device.id}-selftest")
        return ("ok" if result.accepted else "fail"), result.detail

    def config_paths() -> tuple[State, str]:
        problems = path_problems(config)
        fatal = [str(p) for p in problems if p.fatal]
        if fatal:
            return "fail", "; ".join(fatal)
        if problems:
            return "ok", "warning: " + "; ".join(str(p) for p in problems)
        return "ok", "every file and folder the config names is usable"

    def gpio() -> tuple[State, str]:
        if not config.gpio.any_pin:
            return "skip", "no pins configured"
        pins = Gpio(config.gpio, pin_factory=pin_factory)
        try:
            with pins.lit_for_capture():
                pass
        finally:
            pins.close()
        return "ok", f"pins set up with the {config.gpio.pin_factory} pin factory"

    results = [
        _check("config", config_paths),
        _check("storage", storage),
        _check("camera", camera),
        _check("model", model),
        _check("broker", broker),
        _check("gpio", gpio),
    ]
    return results
