"""Plant mask and canopy metrics.

The mask starts from the excess-green index (ExG = 2g - r - b on chromatic
coordinates) with an Otsu threshold kept inside a sane band, adds chlorotic
(yellow) leaf pixels, which ExG alone misses, and necrotic (brown) pixels that lie
inside the canopy, where they cannot be substrate. Thresholds are in OpenCV's HSV
units: hue 0-179 (degrees / 2), saturation and value 0-255.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# ExG threshold band: Otsu picks within it, so a frame with no plant does not split
# the substrate in two and a frame full of leaves does not cut into the canopy.
EXG_MIN_THRESHOLD = 0.06
EXG_MAX_THRESHOLD = 0.20
# Chlorosis: yellow to yellow-green hues (40-68 degrees), clearly coloured.
YELLOW_HUE = (20, 34)
YELLOW_MIN_SAT = 80
YELLOW_MIN_VAL = 70
# Necrosis: orange-brown hues (8-40 degrees), darker than living tissue.
BROWN_HUE = (4, 20)
BROWN_MIN_SAT = 70
BROWN_VAL = (35, 170)
DARK_SUM = 40  # r+g+b below this: chromatic coordinates are noise
UNDER_LUMA = 16
OVER_LEVEL = 250
_KERNEL3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


@dataclass(frozen=True, slots=True)
class CanopyMetrics:
    """What the canopy looks like in one photo."""

    cover_pct: float
    area_px: int
    area_cm2: float | None
    hue_mean_deg: float | None
    hue_median_deg: float | None
    greenness_index: float | None
    yellow_pct: float
    brown_pct: float
    exg_threshold: float


@dataclass(frozen=True, slots=True)
class ExposureCheck:
    """Whether the photo is usable: share of crushed and blown pixels."""

    mean_luma: float
    under_pct: float
    over_pct: float
    verdict: str  # "ok", "under" or "over"


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything measured from one photo, plus the masks the overlay is drawn from."""

    canopy: CanopyMetrics
    exposure: ExposureCheck
    sharpness: float
    plant_mask: np.ndarray
    yellow_mask: np.ndarray
    brown_mask: np.ndarray
    analysed_size: tuple[int, int]


def excess_green(rgb: np.ndarray) -> np.ndarray:
    """ExG on chromatic coordinates, float32 in [-1, 2]; 0 on near-black pixels.

    2g - r - b with g = G / (R + G + B) and so on simplifies to 3G / (R + G + B) - 1,
    which OpenCV computes in one pass per step.
    """
    r, g, b = cv2.split(rgb)
    total = cv2.add(cv2.add(r, g, dtype=cv2.CV_32F), b, dtype=cv2.CV_32F)
    exg = cv2.divide(g, np.maximum(total, 1.0), scale=3.0, dtype=cv2.CV_32F) - 1.0
    exg[total < DARK_SUM] = 0.0
    return exg


def otsu_exg_threshold(exg: np.ndarray) -> float:
    """Otsu's threshold on ExG, clamped to the plausible band."""
    scaled = np.clip((exg + 1.0) * (255.0 / 3.0), 0, 255).astype(np.uint8)
    level, _ = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    value = level * 3.0 / 255.0 - 1.0
    return float(min(max(value, EXG_MIN_THRESHOLD), EXG_MAX_THRESHOLD))


def _in_range(channel: np.ndarray, low: int, high: int) -> np.ndarray:
    return (channel >= low) & (channel <= high)


def _holes(mask: np.ndarray) -> np.ndarray:
    """Background pixels fully enclosed by the mask."""
    h, w = mask.shape
    flood = np.where(mask, 255, 0).astype(np.uint8)
    padded = cv2.copyMakeBorder(flood, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    fill_mask = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(padded, fill_mask, (0, 0), 255)
    return padded[1:-1, 1:-1] == 0


def _drop_specks(mask: np.ndarray, min_area: int) -> np.ndarray:
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _KERNEL3)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[labels]


def plant_masks(
    rgb: np.ndarray, exg: np.ndarray, hsv: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(plant, yellow, brown) boolean masks and the ExG threshold used."""
    threshold = otsu_exg_threshold(exg)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    yellowish = _in_range(hue, *YELLOW_HUE) & (sat >= YELLOW_MIN_SAT) & (val >= YELLOW_MIN_VAL)
    living = (exg > threshold) | yellowish
    min_area = max(4, rgb.shape[0] * rgb.shape[1] // 5000)
    living = _drop_specks(living, min_area)
    brownish = _in_range(hue, *BROWN_HUE) & (sat >= BROWN_MIN_SAT) & _in_range(val, *BROWN_VAL)
    # Small enclosed holes are lesions; a large enclosed area is substrate seen
    # through a ring of leaves, so only holes up to 1% of the frame count.
    holes = _holes(living)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        holes.astype(np.uint8), connectivity=8
    )
    small = np.zeros(count, dtype=bool)
    small[1:] = stats[1:, cv2.CC_STAT_AREA] <= holes.size // 100
    brown = brownish & small[labels]
    plant = living | brown
    # Leaf edges blend green with substrate into yellowish hues: judge colour on the
    # leaf interior only.
    interior = cv2.erode(plant.astype(np.uint8), _KERNEL3).astype(bool)
    yellow = yellowish & interior
    return plant, yellow, brown, threshold


def opencv_hue_stats(hue: np.ndarray, mask: np.ndarray) -> tuple[float | None, float | None]:
    """Circular mean and median hue (degrees) of masked OpenCV hues (0-179, 2 degrees each).

    OpenCV hues take only 180 values, so a histogram gives the same answer as
    per-pixel trigonometry at a fraction of the cost.
    """
    counts = np.bincount(hue[mask], minlength=180)[:180].astype(np.float64)
    n = counts.sum()
    if n == 0:
        return None, None
    angles = np.deg2rad(np.arange(180) * 2.0)
    mean = math.atan2(float(counts @ np.sin(angles)), float(counts @ np.cos(angles)))
    mean_deg = math.degrees(mean) % 360.0
    # Median on the circle: order the bins starting opposite the mean.
    start = int(((mean_deg + 180.0) % 360.0) // 2.0)
    order = np.roll(np.arange(180), -start)
    cumulative = np.cumsum(counts[order])
    median_bin = int(order[int(np.searchsorted(cumulative, n / 2.0))])
    return round(mean_deg, 2), round(median_bin * 2.0, 2)


def exposure_check(rgb: np.ndarray, hsv: np.ndarray | None = None) -> ExposureCheck:
    """Share of under- and over-exposed pixels and a verdict."""
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    under = float((luma < UNDER_LUMA).mean() * 100.0)
    value = (hsv if hsv is not None else cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))[..., 2]
    over = float((value >= OVER_LEVEL).mean() * 100.0)  # V is max(R, G, B)
    mean_luma = float(luma.mean())
    verdict = "under" if under > 25.0 or mean_luma < 40.0 else "over" if over > 10.0 else "ok"
    return ExposureCheck(round(mean_luma, 2), round(under, 3), round(over, 3), verdict)


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the analysis image (higher is sharper)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return round(float(cv2.Laplacian(gray, cv2.CV_32F).var()), 2)


def analyze(
    rgb: np.ndarray, full_size: tuple[int, int] | None = None, px_per_cm: float | None = None
) -> Analysis:
    """Measure the canopy in an RGB image already reduced to analysis resolution.

    `full_size` is the (width, height) of the original photo, so areas are reported
    in full-resolution pixels; `px_per_cm` (full-resolution pixels per centimetre at
    canopy height) adds the area in cm^2.
    """
    h, w = rgb.shape[:2]
    exg = excess_green(rgb)
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    plant, yellow, brown, threshold = plant_masks(rgb, exg, hsv)
    plant_px = int(plant.sum())
    full_w, full_h = full_size or (w, h)
    scale = (full_w * full_h) / float(w * h)
    area_px = round(plant_px * scale)
    hue_mean, hue_median = opencv_hue_stats(hsv[..., 0], plant)
    greenness = round(float(exg[plant].mean()), 4) if plant_px else None
    canopy = CanopyMetrics(
        cover_pct=round(plant_px * 100.0 / (w * h), 3),
        area_px=area_px,
        area_cm2=round(area_px / (px_per_cm**2), 2) if px_per_cm else None,
        hue_mean_deg=hue_mean,
        hue_median_deg=hue_median,
        greenness_index=greenness,
        yellow_pct=round(float(yellow.sum()) * 100.0 / plant_px, 3) if plant_px else 0.0,
        brown_pct=round(float(brown.sum()) * 100.0 / plant_px, 3) if plant_px else 0.0,
        exg_threshold=round(threshold, 4),
    )
    return Analysis(
        canopy=canopy,
        exposure=exposure_check(rgb, hsv),
        sharpness=sharpness(rgb),
        plant_mask=plant,
        yellow_mask=yellow,
        brown_mask=brown,
        analysed_size=(w, h),
    )
