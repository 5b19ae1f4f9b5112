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
from edge.verdict import NO_PLANT, TOO_DARK, UNFAMILIAR, UNKNOWN, UNSURE_PROBLEM, judge
from edge.vision import analyze
from edge.vision.decode import fit_within
from edge.zones import ZoneCache, tile_plant_region, zone_name

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


# --- A fixed camera reuses the assessment of zones that did not change ---


def _grid_and_tiles(rgb: np.ndarray) -> tuple[Any, list[np.ndarray]]:
    grid = tile_plant_region(analyze(rgb).plant_mask, CONFIG.zone_tile_px, 0.3)
    return grid, [rgb[t.y0 : t.y1, t.x0 : t.x1] for t in grid.tiles]


def _noise_only_captures(count: int) -> list[np.ndarray]:
    """The same canopy captured again and again: only the sensor noise differs."""
    cam = SyntheticCamera(
        SyntheticCameraSettings(start_day=18, days_per_capture=0.0), FakeClock(T0)
    )
    return [fit_within(cam.capture().pixels, 640) for _ in range(count)]  # type: ignore[arg-type]


def test_unchanged_zones_keep_their_assessment_and_changed_ones_are_redone(
    classifier: Any,
) -> None:
    first, second = _noise_only_captures(2)
    cache = ZoneCache(CONFIG.zone_reuse_max_diff, CONFIG.zone_reuse_max_captures)
    a = judge(first, analyze(first), classifier, CONFIG, cache=cache).health
    assert a.zones is not None and cache.last_assessed == len(a.zones.cells) > 4
    # Zones the model gives a problem label (at any confidence) are never kept.
    grid, tiles = _grid_and_tiles(first)
    flagged = {
        t.name
        for t, z in zip(grid.tiles, classifier.assess_batch(tiles), strict=True)
        if z.in_distribution and z.label != "healthy"
    }
    # A brown lesion appears on one zone that was not flagged.
    tile = next(t for t in grid.tiles if t.name not in flagged)
    lesion = second.copy()
    cy, cx = (tile.y0 + tile.y1) // 2, (tile.x0 + tile.x1) // 2
    lesion[cy - 8 : cy + 8, cx - 8 : cx + 8] = (110, 70, 30)
    b = judge(lesion, analyze(lesion), classifier, CONFIG, cache=cache).health
    assert b.zones is not None
    # Only the changed zone and the zones flagged with a problem went back to the model.
    assert cache.last_assessed == len(flagged | {tile.name})
    kept = {c.zone: c for c in a.zones.cells}
    for cell in b.zones.cells:
        if cell.zone != tile.name and cell.zone not in flagged:
            assert (cell.label, cell.confidence) == (
                kept[cell.zone].label,
                kept[cell.zone].confidence,
            )


def _result(label: str, in_distribution: bool = True) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(label=label, in_distribution=in_distribution)


def _reusable(r: Any) -> bool:
    return not r.in_distribution or r.label == "healthy"


def test_a_problem_zone_is_assessed_anew_every_capture() -> None:
    rgb = _noise_only_captures(1)[0]
    grid, tiles = _grid_and_tiles(rgb)
    cache = ZoneCache(5.0, 24)
    stale, sigs = cache.stale("model", grid, tiles)
    assert stale == list(range(len(tiles)))
    labels = ["leaf_spot", "healthy", *(["unknown"] * (len(tiles) - 2))]
    fresh = {i: _result(lab, lab != "unknown") for i, lab in enumerate(labels)}
    cache.update(grid, sigs, fresh, _reusable)
    for _ in range(3):
        stale, sigs = cache.stale("model", grid, tiles)
        assert stale == [0]  # the leaf_spot zone; the healthy and unknown ones are kept
        results = cache.update(grid, sigs, {0: _result("leaf_spot")}, _reusable)
        assert [r.label for r in results[1:]] == labels[1:]


def test_kept_zones_expire_and_a_new_model_or_grid_forgets_them() -> None:
    rgb = _noise_only_captures(1)[0]
    grid, tiles = _grid_and_tiles(rgb)
    everything = list(range(len(tiles)))
    cache = ZoneCache(5.0, 2)
    healthy = {i: _result("healthy") for i in everything}
    stale, sigs = cache.stale("model", grid, tiles)
    cache.update(grid, sigs, healthy)
    for expected in ([], [], everything):  # kept twice, then assessed again
        stale, sigs = cache.stale("model", grid, tiles)
        assert stale == expected
        cache.update(grid, sigs, {i: healthy[i] for i in stale})
    assert cache.stale("another model", grid, tiles)[0] == everything
    off = ZoneCache(0.0, 24)
    _, sigs = off.stale("model", grid, tiles)
    off.update(grid, sigs, healthy)
    assert off.stale("model", grid, tiles)[0] == everything  # max_diff 0: no reuse
    with pytest.raises(ValueError, match="neither assessed nor kept"):
        ZoneCache(5.0, 24).update(grid, sigs, {})


# --- A problem label needs health.problem_min_confidence ---


class _Fixed:
    """An assessor that gives every image the same calibrated verdict."""

    def __init__(self, label: str, confidence: float) -> None:
        from edge.inference import Assessment

        rest = (1.0 - confidence) / 5
        scores = {k: rest for k in ("healthy", "leaf_spot", "virus_mosaic", "powdery_mildew")}
        scores |= {"pest_damage": rest, "nutrient_deficiency": rest, label: confidence}
        self.result = Assessment(label, confidence, scores, 0.0, True, np.ones(4, np.float32) / 2)

    def assess_batch(self, rgbs: Any) -> list[Any]:
        return [self.result] * len(rgbs)


@pytest.mark.parametrize(("label", "confidence"), [("leaf_spot", 0.65), ("pest_damage", 0.55)])
def test_a_problem_below_its_confidence_floor_is_unknown_on_photo_and_zones(
    label: str, confidence: float
) -> None:
    rgb = frame(start_day=20)
    a = analyze(rgb)
    health = judge(rgb, a, _Fixed(label, confidence), CONFIG).health
    assert (health.label, health.assessed, health.reason) == (UNKNOWN, False, UNSURE_PROBLEM)
    assert health.zones is not None and {c.label for c in health.zones.cells} == {UNKNOWN}
    sure = judge(rgb, a, _Fixed(label, CONFIG.problem_min_confidence + 0.05), CONFIG).health
    assert (sure.label, sure.assessed) == (label, True)
    healthy = judge(rgb, a, _Fixed("healthy", confidence), CONFIG).health
    assert (healthy.label, healthy.assessed) == ("healthy", True)  # 0.5 is enough for healthy


def test_the_shipped_rule_is_the_one_the_model_card_measured() -> None:
    import json
    from pathlib import Path

    manifest = Path(__file__).resolve().parent.parent / "models" / "plant_health" / "manifest.json"
    rule = json.loads(manifest.read_text())["verdict_rule"]
    assert rule["min_confidence"] == CONFIG.min_confidence
    assert rule["problem_min_confidence"] == CONFIG.problem_min_confidence
