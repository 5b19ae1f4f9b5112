"""Verdicts a grower can trust: unknown when declined, zones, drift from the grow baseline."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import numpy as np
import pytest

from edge.baseline import GrowBaseline, Sample
from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.clock import FakeClock
from edge.config import HealthConfig
from edge.inference import load_classifier
from edge.verdict import NO_PLANT, TOO_DARK, UNFAMILIAR, UNKNOWN, judge
from edge.vision import analyze
from edge.vision.decode import fit_within
from edge.zones import tile_plant_region, zone_name

T0 = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
CONFIG = HealthConfig()


@pytest.fixture(scope="module")
def classifier() -> Any:
    return load_classifier(None)


def frame(**settings: Any) -> np.ndarray:
    cam = SyntheticCamera(SyntheticCameraSettings(width=640, height=480, **settings), FakeClock(T0))
    pixels = cam.capture().pixels
    assert pixels is not None
    return pixels


def verdict_of(rgb: np.ndarray, classifier: Any) -> Any:
    return judge(rgb, analyze(rgb), classifier, CONFIG).health


def test_no_plant_in_view_is_unknown_with_scores(classifier: Any) -> None:
    health = verdict_of(frame(plants=0), classifier)
    assert (health.label, health.assessed, health.reason) == (UNKNOWN, False, NO_PLANT)
    assert sum(health.scores.values()) == pytest.approx(1.0, abs=1e-3)


def test_a_dark_frame_is_unknown_too_dark(classifier: Any) -> None:
    health = verdict_of(frame(start_day=20, brightness=0.08), classifier)
    assert (health.label, health.assessed, health.reason) == (UNKNOWN, False, TOO_DARK)


def test_an_image_unlike_the_training_data_is_unknown(classifier: Any) -> None:
    wall = np.full((240, 320, 3), (60, 130, 45), np.uint8)  # a green wall fills the frame
    health = verdict_of(wall, classifier)
    assert health.ood_score > classifier.ood_threshold
    assert (health.label, health.assessed, health.reason) == (UNKNOWN, False, UNFAMILIAR)


def test_zones_cover_the_plant_region_and_nothing_else() -> None:
    rgb = frame(start_day=18)
    mask = analyze(rgb).plant_mask
    grid = tile_plant_region(mask, 60, 0.3)
    covered = np.zeros_like(mask)
    for t in grid.tiles:
        assert mask[t.y0 : t.y1, t.x0 : t.x1].mean() >= 0.3
        covered[t.y0 : t.y1, t.x0 : t.x1] = True
    # Every skipped tile is mostly background, and zones hold most of the plant.
    h, w = mask.shape
    for r in range(grid.rows):
        for c in range(grid.cols):
            y0, y1 = round(r * h / grid.rows), round((r + 1) * h / grid.rows)
            x0, x1 = round(c * w / grid.cols), round((c + 1) * w / grid.cols)
            if not covered[y0:y1, x0:x1].any():
                assert mask[y0:y1, x0:x1].mean() < 0.3
    assert (mask & covered).sum() / mask.sum() > 0.7
    assert (~mask & covered).sum() / covered.sum() < 0.5  # zones are mostly plant


def test_zone_names_are_row_letter_and_column() -> None:
    assert [zone_name(0, 0), zone_name(1, 2), zone_name(26, 0)] == ["A1", "B3", "AA1"]


def test_a_canopy_gets_a_zone_grid_and_summary_from_one_call(classifier: Any) -> None:
    rgb = frame(start_day=20)
    health = verdict_of(rgb, classifier)
    assert health.zones is not None and health.zones.cells
    assert health.summary is not None
    assert 0 <= health.summary.assessed_share <= 1
    if health.assessed:
        assert sum(health.scores.values()) == pytest.approx(1.0, abs=1e-3)


def drift_series(classifier: Any, **settings: Any) -> list[float]:
    cam = SyntheticCamera(SyntheticCameraSettings(width=640, height=480, **settings), FakeClock(T0))
    baseline = GrowBaseline(6)
    drifts = []
    for seq in range(1, 21):
        pixels = cam.capture().pixels
        assert pixels is not None
        rgb = fit_within(pixels, 640)
        a = analyze(rgb)
        v = judge(rgb, a, classifier, CONFIG)
        c = a.canopy
        kind = "zones" if v.health.zones and v.health.zones.cells else "whole"
        sample = Sample(
            seq, T0, kind, v.embedding, c.hue_mean_deg, c.greenness_index, c.yellow_pct, c.brown_pct
        )
        d = baseline.drift(sample)
        if d is not None:
            drifts.append(d)
        if baseline.wants(sample):
            baseline.add(sample)
    return drifts


def test_drift_stays_low_on_a_steady_canopy(classifier: Any) -> None:
    drifts = drift_series(classifier, start_day=16, days_per_capture=0.0)
    assert max(drifts) < 1.0


def test_drift_rises_when_the_canopy_starts_yellowing(classifier: Any) -> None:
    drifts = drift_series(classifier, start_day=16, days_per_capture=1.0, yellowing_onset_day=22)
    assert max(drifts[:2]) < 1.5  # before the yellowing shows
    assert drifts[-1] >= CONFIG.drift_alert


def test_a_close_up_that_fills_the_frame_is_classified_whole(classifier: Any) -> None:
    rgb = frame(start_day=26)
    grid = tile_plant_region(analyze(rgb).plant_mask, 48, 0.9)  # the densest leaf tiles
    assert grid.tiles, "the synthetic canopy should have solid leaf tiles by day 26"
    t = max(grid.tiles, key=lambda tile: tile.plant_share)
    close_up = np.ascontiguousarray(
        np.kron(rgb[t.y0 : t.y1, t.x0 : t.x1], np.ones((6, 6, 1), np.uint8))
    )
    a = analyze(close_up)
    assert a.canopy.cover_pct >= CONFIG.closeup_cover_pct
    health = judge(close_up, a, classifier, CONFIG).health
    assert health.zones is None and health.summary is None
