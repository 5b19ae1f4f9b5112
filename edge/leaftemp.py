"""Leaf temperature: the thermal pixels that fall on the plant mask, summarised robustly.

The plant mask (analysis resolution) is eroded so leaf edges, where a thermal pixel
sees leaf and substrate at once, are left out; then each thermal pixel's leaf share
is computed through the registration, and the median of the pixels that are at
least `min_leaf_share` leaf is the leaf temperature. Too few such pixels, or a
thermal view that misses the photo, gives no number and a reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.sensors.fakes import leaf_share_in_thermal
from edge.sensors.settings import RegistrationSettings


@dataclass(frozen=True, slots=True)
class LeafTemperature:
    """The leaf temperature (None with a reason when it cannot be trusted)."""

    leaf_temp_c: float | None
    pixels: int
    spread_c: float | None = None  # interquartile range of the leaf pixels
    reason: str | None = None


def leaf_temperature(
    thermal: np.ndarray, mask: np.ndarray, reg: RegistrationSettings
) -> LeafTemperature:
    """Median temperature of the thermal pixels under the (eroded) plant mask."""
    rows, cols = thermal.shape
    plant = mask.astype(np.uint8)
    if reg.erode_px:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reg.erode_px + 1,) * 2)
        plant = cv2.erode(plant, kernel).astype(np.uint8)
    if not plant.any():
        return LeafTemperature(None, 0, reason="no plant left after eroding leaf edges")
    share = leaf_share_in_thermal(plant, reg, rows, cols)
    # A thermal pixel only partly inside the photo cannot be judged: the rest is unseen.
    inside = leaf_share_in_thermal(np.ones_like(plant), reg, rows, cols) >= 0.999
    leaf = (share >= reg.min_leaf_share) & inside & np.isfinite(thermal)
    count = int(leaf.sum())
    if count < reg.min_pixels:
        return LeafTemperature(
            None,
            count,
            reason=f"{count} thermal pixels fully on leaves; {reg.min_pixels} needed "
            "(plants too small for the thermal array, or registration off)",
        )
    values = thermal[leaf].astype(np.float64)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return LeafTemperature(round(float(median), 2), count, round(float(q3 - q1), 2))


@dataclass(frozen=True, slots=True)
class RegistrationFit:
    """The registration that best lines the plant mask up with the thermal frame."""

    registration: RegistrationSettings
    correlation: float  # |normalised correlation| of mask and thermal frame, 0-1


def fit_registration(
    thermal: np.ndarray,
    mask: np.ndarray,
    scales: np.ndarray | None = None,
    upsample: int = 4,
) -> RegistrationFit:
    """Find the scale and offset that place the photo's plant mask on the thermal frame.

    Leaves differ in temperature from the substrate (cooler when transpiring, warmer
    under a lamp), so the plant mask, shrunk to the photo's size in the thermal frame,
    correlates with the thermal image where the photo lies. Every scale pair is tried
    and template matching finds the best offset of each. The photo must lie within the
    thermal view, not mirrored (a mirrored mount: flip the mask and negate the scale).
    """
    rows, cols = thermal.shape
    if not mask.any() or mask.all():
        raise ValueError("the photo needs plants and substrate in view to register against")
    frame = np.nan_to_num(thermal.astype(np.float32), nan=float(np.nanmedian(thermal)))
    big = cv2.resize(frame, (cols * upsample, rows * upsample), interpolation=cv2.INTER_CUBIC)
    plant = mask.astype(np.float32)
    best: tuple[float, float, float, int, int] | None = None
    for sx in np.linspace(0.3, 1.0, 15) if scales is None else scales:
        for sy in np.linspace(0.3, 1.0, 15) if scales is None else scales:
            w, h = round(sx * cols * upsample), round(sy * rows * upsample)
            template = cv2.resize(plant, (w, h), interpolation=cv2.INTER_AREA)
            if float(template.std()) == 0.0:
                continue
            low, high, low_at, high_at = cv2.minMaxLoc(
                cv2.matchTemplate(big, template, cv2.TM_CCOEFF_NORMED)
            )
            score, (x, y) = (-low, low_at) if -low > high else (high, high_at)
            if best is None or score > best[0]:
                best = (score, w / (cols * upsample), h / (rows * upsample), x, y)
    if best is None:
        raise ValueError("the plant mask is too small to register against the thermal frame")
    score, sx, sy, x, y = best
    reg = RegistrationSettings(
        scale_x=round(sx, 3),
        scale_y=round(sy, 3),
        offset_x=round(x / (cols * upsample), 3),
        offset_y=round(y / (rows * upsample), 3),
    )
    return RegistrationFit(reg, round(float(score), 3))
