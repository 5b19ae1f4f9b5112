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
