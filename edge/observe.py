"""From a frame to an Observation: measure the canopy, ask the model, fill the message."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.baseline import GrowBaseline, Sample
from edge.camera.base import Frame
from edge.config import EdgeConfig, ModelConfig
from edge.errors import CultivaiError, ExposureError, ImageDecodeError
from edge.protocol import (
    CanopyBlock,
    ClimateBlock,
    ExposureBlock,
    HealthBlock,
    ImageBlock,
    ModelBlock,
    Observation,
)
from edge.verdict import NO_PLANT, TOO_BRIGHT, TOO_DARK, judge
from edge.vision import Analysis, BackgroundModel, analyze, decode_for_analysis, render_overlay
from edge.vision.canopy import ExposureCheck, balanced_frame, exposure_check
from edge.vision.decode import decode_full, fit_within, image_size, is_jpeg
from edge.zones import ZoneCache

log = logging.getLogger(__name__)
# Photos whose canopy cannot be measured: they never enter or get compared to the baseline.
UNUSABLE = (NO_PLANT, TOO_DARK, TOO_BRIGHT)
BACKGROUND_FILE = "background.npz"


@dataclass(frozen=True, slots=True)
class Measured:
    """What one frame yielded, before it has a seq."""

    frame: Frame
    rgb: np.ndarray
    analysis: Analysis
    health: HealthBlock | None
    analysis_s: float = 0.0
    inference_s: float = 0.0
    sample: Sample | None = None  # for the grow baseline; its seq is set when stored
    climate: ClimateBlock | None = None  # set by the agent when sensors are configured


def load_model(config: ModelConfig) -> tuple[Any, ModelBlock]:
    """Load the plant-health classifier, or say why not; the canopy is measured either way."""
    if not config.enabled:
        return None, ModelBlock(error="model disabled in config")
    try:
        from edge.inference import load_classifier

        classifier = load_classifier(config.dir, delegate=config.delegate, threads=config.threads)
    except (CultivaiError, ImportError, OSError, ValueError) as exc:
        log.error("plant-health model not loaded; measuring canopy only", extra={"error": str(exc)})
        return None, ModelBlock(error=str(exc))
    info = classifier.info
    log.info(
        "plant-health model loaded",
        extra={"model": info.name, "version": info.version, "backend": info.backend},
    )
    return classifier, ModelBlock(name=info.name, version=info.version, backend=info.backend)


def stored_background(config: EdgeConfig) -> BackgroundModel:
    """The device's background model, kept in its data folder so it survives a restart."""
    return BackgroundModel(path=config.storage.dir / BACKGROUND_FILE)


class Observer:
    """Measures frames and turns them into observations for one device."""

    def __init__(
        self,
        config: EdgeConfig,
        classifier: Any,
        model: ModelBlock,
        baseline: GrowBaseline | None = None,
        background: BackgroundModel | None = None,
    ) -> None:
        self.config = config
        self.classifier = classifier
        self.model = model
        self.baseline = baseline
        # A fixed camera's background, learnt from this grow's first captures or taken
        # from an empty-scene capture; kept in memory only unless one with a file is given.
        self.background = background or BackgroundModel()
        # Each zone's last assessment, kept while the zone looks the same (edge.zones).
        health = config.health
        self.zones = ZoneCache(health.zone_reuse_max_diff, health.zone_reuse_max_captures)

    def _analysis_image(self, frame: Frame) -> tuple[np.ndarray, tuple[int, int]]:
        """The frame at analysis resolution and the photo's full (width, height)."""
        max_side = self.config.vision.analysis_max_side
        if frame.jpeg is not None:
            return decode_for_analysis(frame.jpeg, max_side)
        assert frame.pixels is not None
        return fit_within(frame.pixels, max_side), (frame.width, frame.height)

    def measure(self, frame: Frame) -> Measured:
        """Canopy analysis at reduced resolution, then the model on the same image."""
        started = time.perf_counter()
        rgb, full = self._analysis_image(frame)
        v = self.config.vision
        analysis = analyze(
            rgb, full, v.px_per_cm, background=self.background, white_reference=v.white_reference
        )
        analysed = time.perf_counter()
        health = None
        sample = None
        classifier = self.classifier  # a reload may swap it; use one for the whole frame
        if classifier is not None:
            try:
                verdict = judge(
                    rgb,
                    analysis,
                    classifier,
                    self.config.health,
                    self.config.vision.px_per_cm,
                    frame.width,
                    self.zones,
                )
            except (CultivaiError, ValueError) as exc:
                # A model that fails on one photo must not stop the canopy being measured.
                log.error("plant-health model failed on this photo", extra={"error": str(exc)})
                verdict = None
            health = verdict.health if verdict else None
            if verdict is not None and health is not None and health.reason not in UNUSABLE:
                c = analysis.canopy
                sample = Sample(
                    0,
                    frame.captured_at,
                    "zones" if health.zones and health.zones.cells else "whole",
                    verdict.embedding,
                    c.hue_mean_deg,
                    c.greenness_index,
                    c.yellow_pct,
                    c.brown_pct,
                )
                if self.baseline is not None:
                    health = health.model_copy(update={"drift": self.baseline.drift(sample)})
        done = time.perf_counter()
        return Measured(frame, rgb, analysis, health, analysed - started, done - analysed, sample)

    def capture_empty(
        self, frame: Frame, lights_off: Callable[[float], bool] = lambda _luma: False
    ) -> datetime:
        """Take a frame with no plants in view as the background; returns when it was taken.

        It is decoded and white-balanced exactly as `measure` prepares a frame, so the
        background is compared with captures like for like. A frame whose exposure a
        capture would call under or over (or `lights_off`, the schedule's lights-off
        test, finds dark) is refused: a black or washed-out frame would make every
        pixel "known background" until the next baseline reset. Raises
        ImageDecodeError, ExposureError.
        """
        rgb, _ = self._analysis_image(frame)
        problem = _empty_scene_exposure_problem(exposure_check(rgb), lights_off)
        if problem is not None:
            raise ExposureError(f"empty scene not taken: {problem}")
        balanced, _light = balanced_frame(rgb, self.config.vision.white_reference)
        self.background.capture_empty(balanced, frame.captured_at)
        return frame.captured_at

    def observation(self, m: Measured, seq: int, stored: bool) -> Observation:
        """The wire message for a measured frame."""
        c, e = m.analysis.canopy, m.analysis.exposure
        device = self.config.device
        return Observation(
            device_id=device.id,
            seq=seq,
            captured_at=m.frame.captured_at,
            site=device.site,
            room=device.room,
            camera=self.config.camera.backend,
            canopy=CanopyBlock(
                cover_pct=c.cover_pct,
                area_px=c.area_px,
                area_cm2=c.area_cm2,
                hue_mean_deg=c.hue_mean_deg,
                hue_median_deg=c.hue_median_deg,
                greenness_index=c.greenness_index,
                yellow_pct=c.yellow_pct,
                brown_pct=c.brown_pct,
                exg_threshold=c.exg_threshold,
                light=c.light,
                colour_reason=c.colour_reason,
            ),
            exposure=ExposureBlock(
                verdict=e.verdict,
                mean_luma=e.mean_luma,
                under_pct=e.under_pct,
                over_pct=e.over_pct,
                sharpness=m.analysis.sharpness,
                exposure_time_us=m.frame.exposure.exposure_time_us,
                analogue_gain=m.frame.exposure.analogue_gain,
                locked=m.frame.exposure.locked,
            ),
            image=ImageBlock(
                width=m.frame.width, height=m.frame.height, stored=stored, source=m.frame.source
            ),
            health=m.health,
            model=self.model,
            climate=m.climate,
        )

    def encode_photo(self, frame: Frame) -> bytes:
        """The JPEG to keep: the camera's own bytes when it gave some."""
        if frame.jpeg is not None:
            return frame.jpeg
        assert frame.pixels is not None
        bgr = cv2.cvtColor(frame.pixels, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(
            ".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.config.storage.jpeg_quality]
        )
        if not ok:
            raise ImageDecodeError("OpenCV could not encode the photo as JPEG")
        return buf.tobytes()

    def overlay(self, m: Measured) -> bytes:
        """The plant-mask overlay for the grower's page."""
        return render_overlay(m.rgb, m.analysis)


def thumbnail_jpeg(rgb: np.ndarray, max_side: int, quality: int = 75) -> bytes:
    """A small JPEG of the analysis image, for the broker and Home Assistant."""
    small = fit_within(rgb, max_side)
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    if not ok:
        raise ImageDecodeError("OpenCV could not encode the thumbnail")
    return buf.tobytes()


def frame_from_file(path: Path, captured_at: datetime) -> Frame:
    """A Frame holding an image file's bytes, for `analyze`; raises ImageDecodeError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(f"cannot read file: {exc.strerror or exc}") from exc
    width, height = image_size(data)
    if is_jpeg(data):
        return Frame(
            captured_at=captured_at, width=width, height=height, jpeg=data, source=path.name
        )
    return Frame(
        captured_at=captured_at,
        width=width,
        height=height,
        pixels=decode_full(data),
        source=path.name,
    )


def _empty_scene_exposure_problem(
    e: ExposureCheck, lights_off: Callable[[float], bool]
) -> str | None:
    """Why a frame's exposure cannot serve as the empty scene, in words; None when it can."""
    if lights_off(e.mean_luma) or e.verdict == "under":
        return (
            f"the photo is too dark (mean brightness {e.mean_luma:.0f} of 255, "
            f"{e.under_pct:.0f}% of pixels near black): turn the grow lights on"
        )
    if e.verdict == "over":
        return (
            f"the photo is too bright ({e.over_pct:.0f}% of pixels washed out): "
            "lower the camera exposure or dim the lights"
        )
    return None
