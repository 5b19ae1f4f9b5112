"""Canopy analysis against the synthetic camera's ground truth and on real leaf photos."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.clock import FakeClock
from edge.errors import ImageDecodeError
from edge.vision import analyze, decode_for_analysis, render_overlay
from edge.vision.canopy import opencv_hue_stats
from edge.vision.decode import fit_within, jpeg_size, reduction_for


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("day", [3, 8, 14, 20, 28, 40])
def test_cover_matches_synthetic_truth_within_2_points(
    seed: int, day: float, clock: FakeClock
) -> None:
    cam = SyntheticCamera(SyntheticCameraSettings(seed=seed), clock)
    rgb, truth = cam.render(day)
    small = fit_within(rgb, 640)
    measured = analyze(small, (rgb.shape[1], rgb.shape[0])).canopy.cover_pct
    assert abs(measured - truth.mean() * 100) <= 2.0


def test_cover_from_jpeg_matches_truth(clock: FakeClock) -> None:
    cam = SyntheticCamera(SyntheticCameraSettings(width=2048, height=1536, seed=4), clock)
    rgb, truth = cam.render(18)
    small, full = decode_for_analysis(encode_jpeg(rgb), 640)
    assert full == (2048, 1536)
    assert max(small.shape[:2]) <= 640
    assert abs(analyze(small, full).canopy.cover_pct - truth.mean() * 100) <= 2.0


def test_mask_agrees_with_truth_pixelwise(clock: FakeClock) -> None:
    cam = SyntheticCamera(SyntheticCameraSettings(seed=3), clock)
    rgb, truth = cam.render(20)
    mask = analyze(rgb).plant_mask
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9


def test_yellowing_leaves_stay_canopy_and_raise_yellow_pct(clock: FakeClock) -> None:
    green = SyntheticCamera(SyntheticCameraSettings(seed=5), clock)
    yellowing = SyntheticCamera(SyntheticCameraSettings(seed=5, yellowing_onset_day=14), clock)
    rgb_g, truth = green.render(30)
    rgb_y, truth_y = yellowing.render(30)
    assert (truth == truth_y).all()  # the same plants, only colour differs
    a_g, a_y = analyze(fit_within(rgb_g, 640)), analyze(fit_within(rgb_y, 640))
    assert abs(a_y.canopy.cover_pct - truth.mean() * 100) <= 2.0
    assert a_g.canopy.yellow_pct < 5
    assert a_y.canopy.yellow_pct > 30
    assert a_y.canopy.hue_mean_deg is not None and a_g.canopy.hue_mean_deg is not None
    assert a_y.canopy.hue_mean_deg < a_g.canopy.hue_mean_deg  # hue moves towards yellow


def test_brown_lesions_inside_leaves_count_as_necrosis() -> None:
    rgb = np.full((400, 400, 3), (96, 74, 56), np.uint8)  # substrate
    cv2.circle(rgb, (200, 200), 120, (60, 130, 45), -1)  # a leaf
    for x, y in ((160, 170), (240, 210), (200, 250)):
        cv2.circle(rgb, (x, y), 12, (110, 62, 25), -1)  # necrotic spots
    a = analyze(rgb)
    lesion_share = 3 * np.pi * 12**2 / (np.pi * 120**2) * 100
    assert a.canopy.brown_pct == pytest.approx(lesion_share, abs=1.5)
    assert a.canopy.cover_pct == pytest.approx(np.pi * 120**2 / 400**2 * 100, abs=1.0)


def test_bare_substrate_has_almost_no_canopy(clock: FakeClock) -> None:
    cam = SyntheticCamera(SyntheticCameraSettings(plants=0), clock)
    rgb, _ = cam.render(10)
    assert analyze(fit_within(rgb, 640)).canopy.cover_pct < 0.5


def test_areas_are_reported_in_full_resolution_pixels_and_cm2() -> None:
    rgb = np.full((100, 200, 3), (96, 74, 56), np.uint8)
    rgb[:, :50] = (60, 130, 45)  # a quarter of the frame is leaf
    c = analyze(rgb, full_size=(2000, 1000), px_per_cm=10.0).canopy
    assert c.cover_pct == pytest.approx(25.0, abs=0.5)
    assert c.area_px == pytest.approx(500_000, rel=0.02)
    assert c.area_cm2 == pytest.approx(5000, rel=0.02)


def test_circular_hue_mean_wraps_around_red() -> None:
    hues = np.array([[175, 5, 178, 2]], np.uint8)  # 350, 10, 356 and 4 degrees
    mean, median = opencv_hue_stats(hues, np.ones_like(hues, dtype=bool))
    assert mean is not None and median is not None
    assert min(mean, 360 - mean) < 0.5
    assert min(median, 360 - median) < 5


def test_circular_median_follows_the_bulk_of_the_pixels() -> None:
    hues = np.array([[50] * 6 + [60] * 3 + [120] * 2], np.uint8)  # mostly 100 degrees
    mean, median = opencv_hue_stats(hues, np.ones_like(hues, dtype=bool))
    assert median == 100.0
    assert mean is not None and 100 < mean < 140


def test_exposure_check_flags_dark_and_blown_frames() -> None:
    dark = np.full((120, 160, 3), 5, np.uint8)
    blown = np.full((120, 160, 3), 255, np.uint8)
    normal = np.full((120, 160, 3), 120, np.uint8)
    assert analyze(dark).exposure.verdict == "under"
    assert analyze(blown).exposure.verdict == "over"
    assert analyze(normal).exposure.verdict == "ok"


def test_sharpness_drops_when_the_photo_is_blurred(clock: FakeClock) -> None:
    rgb, _ = SyntheticCamera(SyntheticCameraSettings(), clock).render(20)
    sharp = analyze(fit_within(rgb, 640)).sharpness
    blurred = analyze(cv2.GaussianBlur(fit_within(rgb, 640), (0, 0), 4)).sharpness
    assert blurred < sharp / 3


def test_jpeg_is_decoded_with_libjpeg_scaling() -> None:
    assert reduction_for((4056, 3040), 640) == 4
    assert reduction_for((1280, 960), 640) == 2
    assert reduction_for((800, 600), 640) == 1
    data = encode_jpeg(np.zeros((3040, 4056, 3), np.uint8))
    assert jpeg_size(data) == (4056, 3040)


def test_overlay_is_a_jpeg_of_the_analysis_size(clock: FakeClock) -> None:
    rgb, _ = SyntheticCamera(SyntheticCameraSettings(), clock).render(15)
    small = fit_within(rgb, 640)
    overlay = render_overlay(small, analyze(small))
    decoded = cv2.imdecode(np.frombuffer(overlay, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape[:2] == small.shape[:2]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\xff\xd8\xff\xe0garbage", "JPEG"),
        (b"not an image at all", "corrupt"),
    ],
)
def test_unreadable_data_raises_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message):
        decode_for_analysis(data, 640)


def test_truncated_jpeg_is_refused(clock: FakeClock) -> None:
    rgb, _ = SyntheticCamera(SyntheticCameraSettings(), clock).render(15)
    data = encode_jpeg(rgb)
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_for_analysis(data[: len(data) // 2], 640)


def _leaf_photos(dataset: Path, klass: str, limit: int) -> list[Path]:
    with open(dataset / "manifest.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["class"] == klass]
    return [dataset / r["file"] for r in rows[:: max(1, len(rows) // limit)][:limit]]


def test_real_healthy_leaves_measure_green_with_little_yellow(leaf_dataset: Path) -> None:
    results = []
    for path in _leaf_photos(leaf_dataset, "healthy", 30):
        rgb, full = decode_for_analysis(path.read_bytes(), 640)
        results.append(analyze(rgb, full).canopy)
    covers = [c.cover_pct for c in results]
    yellows = [c.yellow_pct for c in results]
    hues = [c.hue_mean_deg for c in results if c.hue_mean_deg is not None]
    assert np.median(covers) > 20  # single-leaf photos: the leaf fills much of the frame
    assert all(0 <= c <= 100 for c in covers)
    assert np.median(yellows) < 10
    assert 60 < np.median(hues) < 160  # green


def test_real_diseased_leaves_show_more_yellow_than_healthy_ones(leaf_dataset: Path) -> None:
    def median_yellow(klass: str) -> float:
        values = []
        for path in _leaf_photos(leaf_dataset, klass, 30):
            rgb, full = decode_for_analysis(path.read_bytes(), 640)
            values.append(analyze(rgb, full).canopy.yellow_pct)
        return float(np.median(values))

    assert median_yellow("virus_mosaic") > median_yellow("healthy")
