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

from edge.vision.background import BackgroundModel
from edge.vision.light import LightReading, read_light, white_balance

# ExG threshold band: Otsu picks within it, so a frame with no plant does not split
# the substrate in two and a frame full of leaves does not cut into the canopy.
EXG_MIN_THRESHOLD = 0.06
EXG_MAX_THRESHOLD = 0.20
# Chlorosis: yellow to yellow-green hues (40-68 degrees), clearly coloured.
YELLOW_HUE = (20, 34)
# Saturated enough that beige cardboard (about 105) and pale wood are not chlorosis.
YELLOW_MIN_SAT = 110
YELLOW_MIN_VAL = 90
SAT_MARGIN_PER_GAIN = 12.0  # extra saturation asked per unit of white-balance amplification
# Necrosis: orange-brown hues (8-40 degrees), darker than living tissue.
BROWN_HUE = (4, 20)
BROWN_MIN_SAT = 70
BROWN_VAL = (35, 170)
DARK_SUM = 40  # r+g+b below this: chromatic coordinates are noise
UNDER_LUMA = 16
COLOUR_MIN_LUMA = 25.0  # mean luma below which hue and saturation are mostly sensor noise
OVER_LEVEL = 250
_KERNEL3 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_KERNEL5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
# Yellow or brown tissue must lie within this share of the frame's diagonal of green
# tissue (about one leaf), and one such region may not exceed this share of the frame:
# a chlorotic leaf is leaf-sized, a sheet of cardboard is not.
NEAR_GREEN = 0.03
MAX_LEAF_REGION = 0.04
# Pale green leaf: green hues (72-190 degrees), a little colour, some excess green.
GREEN_HUE = (36, 95)
GREEN_MIN_SAT = 28
EXG_WEAK = 0.02
SHADE_REFERENCE = 170.0  # local brightness that needs no correction (max channel, 0-255)


@dataclass(frozen=True, slots=True)
class Rules:
    """Which of the grow-room rules run (all by default; off only to measure what each buys)."""

    white_balance: bool = True
    shade: bool = True
    near_green: bool = True
    leaf_size: bool = True
    background: bool = True
    pale_leaves: bool = True


ALL_RULES = Rules()


@dataclass(frozen=True, slots=True)
class CanopyMetrics:
    """What the canopy looks like in one photo."""

    cover_pct: float
    area_px: int
    area_cm2: float | None
    hue_mean_deg: float | None
    hue_median_deg: float | None
    greenness_index: float | None
    yellow_pct: float | None  # None: colour could not be judged (see colour_reason)
    brown_pct: float | None
    exg_threshold: float
    light: str = "white"
    colour_reason: str | None = None


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


def local_brightness(rgb: np.ndarray) -> np.ndarray:
    """Brightness of the light falling on each pixel: brightest channel, smoothed at leaf scale."""
    h, w = rgb.shape[:2]
    level = rgb.max(axis=2)
    small = cv2.resize(level, (max(1, w // 16), max(1, h // 16)), interpolation=cv2.INTER_AREA)
    # The local maximum, not the mean: a dark leaf in bright light is dark, not shaded.
    small = cv2.dilate(small, np.ones((3, 3), np.uint8))
    small = cv2.blur(small, (3, 3))
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)


def _grow_into(seed: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The regions of `allowed` that contain at least one `seed` pixel."""
    count, labels = cv2.connectedComponents(allowed.astype(np.uint8), connectivity=8)
    hit = np.bincount(labels[seed], minlength=count) > 0
    hit[0] = False
    return hit[labels]


def _components_near(
    candidates: np.ndarray, green: np.ndarray, rules: Rules, max_area: int, reach: int
) -> np.ndarray:
    """Candidate regions admitted as leaf: near green tissue and no bigger than a leaf."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        candidates.astype(np.uint8), connectivity=8
    )
    keep = np.ones(count, dtype=bool)
    keep[0] = False
    if rules.leaf_size:
        keep[1:] &= stats[1:, cv2.CC_STAT_AREA] <= max_area
    if rules.near_green:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))
        near = cv2.dilate(green.astype(np.uint8), kernel).astype(bool)
        touched = np.bincount(labels[near], minlength=count) > 0
        keep &= touched
    return keep[labels]


def plant_masks(
    rgb: np.ndarray,
    exg: np.ndarray,
    hsv: np.ndarray,
    background: np.ndarray | None = None,
    rules: Rules = ALL_RULES,
    yellow_min_sat: int = YELLOW_MIN_SAT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(plant, yellow, brown) boolean masks and the ExG threshold used.

    `background` marks pixels that match the fixed camera's known background; yellow
    and brown are never taken there.
    """
    h, w = rgb.shape[:2]
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    if rules.shade:
        light = local_brightness(rgb)
        # Judge brightness against the light that falls there, so a leaf in shade is as
        # bright as one in the open; bright areas are never dimmed.
        gain = np.clip(SHADE_REFERENCE / np.maximum(light, 1.0), 1.0, 4.0)
        val = np.clip(val.astype(np.float32) * gain, 0, 255)
        # In shade, near-black may be a leaf; but noise does not shrink with the light.
        dark = rgb.astype(np.int32).sum(axis=2) < np.maximum(20.0, DARK_SUM / np.sqrt(gain))
        exg = np.where(dark, 0.0, exg).astype(np.float32)
    yellowish = _in_range(hue, *YELLOW_HUE) & (sat >= yellow_min_sat) & (val >= YELLOW_MIN_VAL)
    brownish = _in_range(hue, *BROWN_HUE) & (sat >= BROWN_MIN_SAT) & _in_range(val, *BROWN_VAL)
    if background is not None and rules.background:
        # What the empty scene showed there is still there: not plant, whatever its colour.
        exg = np.where(background, 0.0, exg).astype(np.float32)
        yellowish &= ~background
        brownish &= ~background
    threshold = otsu_exg_threshold(exg)
    min_area = max(4, h * w // 5000)
    strong = exg > threshold
    # Pale, grey-green leaves sit below the threshold: take green-hued, coloured pixels
    # as leaf where they join leaf that passed it (hysteresis), never on their own, and
    # not in deep shade, where JPEG noise alone gives dark soil a green hue.
    weak = (
        _in_range(hue, *GREEN_HUE) & (sat >= GREEN_MIN_SAT) & (exg > EXG_WEAK) & (hsv[..., 2] >= 40)
    )
    if rules.pale_leaves:
        strong = _grow_into(strong, weak | strong)
    green = _drop_specks(strong, min_area)
    reach = max(2, int(math.hypot(h, w) * NEAR_GREEN))
    max_region = max(min_area, int(h * w * MAX_LEAF_REGION))
    yellow_regions = _drop_specks(yellowish & ~green, min_area)
    yellow_regions = _components_near(yellow_regions, green, rules, max_region, reach)
    living = green | yellow_regions
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
    # Leaf edges blend green with substrate into thin yellowish rims: an opening drops
    # them, and growing the remaining cores back by two pixels keeps the edges of leaves
    # that really are yellow.
    core = cv2.morphologyEx((yellowish & plant).astype(np.uint8), cv2.MORPH_OPEN, _KERNEL3)
    grown = cv2.dilate(core, _KERNEL5).astype(bool)
    # JPEG halves colour resolution, so a yellow leaf's rim is paler: next to a yellow
    # core, half the saturation is enough (and a hue clear of beige, 40 degrees).
    rim = _in_range(hue, YELLOW_HUE[0] + 2, YELLOW_HUE[1]) & (sat >= yellow_min_sat // 2)
    rim &= val >= YELLOW_MIN_VAL
    # That rim is leaf too, though too pale for the excess-green threshold.
    # One pixel wide only, or it would creep into beige backgrounds.
    rim &= cv2.dilate(core, _KERNEL3).astype(bool)
    plant = plant | rim
    yellow = (yellowish & plant & grown) | rim
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


def balanced_frame(
    rgb: np.ndarray,
    white_reference: tuple[float, float, float, float] | None = None,
    rules: Rules = ALL_RULES,
) -> tuple[np.ndarray, LightReading]:
    """The frame white-balanced as analysis measures it, and the light it was taken under."""
    if rules.white_balance:
        light = read_light(rgb, white_reference)
    else:
        light = LightReading("white", (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), None)
    # A median takes out JPEG chroma noise, which white balance amplifies (three times
    # for blue under HPS), so that it cannot paint speckles of colour onto the background.
    return cv2.medianBlur(white_balance(rgb, light.gains), 3), light


def analyze(
    rgb: np.ndarray,
    full_size: tuple[int, int] | None = None,
    px_per_cm: float | None = None,
    *,
    background: BackgroundModel | None = None,
    white_reference: tuple[float, float, float, float] | None = None,
    rules: Rules = ALL_RULES,
) -> Analysis:
    """Measure the canopy in an RGB image already reduced to analysis resolution.

    `full_size` is the (width, height) of the original photo, so areas are reported
    in full-resolution pixels; `px_per_cm` (full-resolution pixels per centimetre at
    canopy height) adds the area in cm^2. `background` is the fixed camera's learnt
    background (it learns from this frame too); `white_reference` the (x, y, w, h)
    of a grey card as fractions of the frame.
    """
    h, w = rgb.shape[:2]
    balanced, light = balanced_frame(rgb, white_reference, rules)
    exg = excess_green(balanced)
    hsv = cv2.cvtColor(balanced, cv2.COLOR_RGB2HSV)
    known = background.matches(balanced) if background is not None else None
    # White balance multiplies JPEG error along with the signal: ask for a clearer
    # yellow the more it had to amplify one channel against another.
    amplification = max(light.gains) / min(light.gains) - 1.0
    min_sat = YELLOW_MIN_SAT + round(SAT_MARGIN_PER_GAIN * amplification)
    plant, yellow, brown, threshold = plant_masks(balanced, exg, hsv, known, rules, min_sat)
    if background is not None:
        # Green leaf is never learnt as background, however still it stays; a yellow
        # sticky trap or a beige wall is, once it has stayed the same for long enough.
        background.learn(balanced, plant & _in_range(hsv[..., 0], *GREEN_HUE))
    exposure = exposure_check(rgb)
    reason = light.colour_reason
    if reason is None and (exposure.under_pct > 25.0 or exposure.mean_luma < COLOUR_MIN_LUMA):
        reason = "photo too dark to judge leaf colour"
    plant_px = int(plant.sum())
    full_w, full_h = full_size or (w, h)
    scale = (full_w * full_h) / float(w * h)
    area_px = round(plant_px * scale)
    hue_mean, hue_median = opencv_hue_stats(hsv[..., 0], plant)
    greenness = round(float(exg[plant].mean()), 4) if plant_px else None
    colour_ok = reason is None

    def share(mask: np.ndarray) -> float | None:
        if not colour_ok:
            return None
        return round(float(mask.sum()) * 100.0 / plant_px, 3) if plant_px else 0.0

    canopy = CanopyMetrics(
        cover_pct=round(plant_px * 100.0 / (w * h), 3),
        area_px=area_px,
        area_cm2=round(area_px / (px_per_cm**2), 2) if px_per_cm else None,
        hue_mean_deg=hue_mean if colour_ok else None,
        hue_median_deg=hue_median if colour_ok else None,
        greenness_index=greenness if colour_ok else None,
        yellow_pct=share(yellow),
        brown_pct=share(brown),
        exg_threshold=round(threshold, 4),
        light=light.lamp,
        colour_reason=reason,
    )
    return Analysis(
        canopy=canopy,
        exposure=exposure,
        sharpness=sharpness(rgb),
        plant_mask=plant,
        yellow_mask=yellow,
        brown_mask=brown,
        analysed_size=(w, h),
    )
