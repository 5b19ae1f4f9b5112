"""The plant-mask overlay the grower's page shows over the photo."""

from __future__ import annotations

import cv2
import numpy as np

from edge.vision.canopy import Analysis

_TINTS = {  # RGB
    "plant": np.array([40, 220, 90], np.float32),
    "yellow": np.array([255, 210, 0], np.float32),
    "brown": np.array([220, 40, 40], np.float32),
}


def render_overlay(rgb: np.ndarray, analysis: Analysis, quality: int = 80) -> bytes:
    """JPEG of the analysis image: substrate dimmed, plant tinted, problems highlighted."""
    out = rgb.astype(np.float32) * 0.45
    for name, mask in (
        ("plant", analysis.plant_mask),
        ("yellow", analysis.yellow_mask),
        ("brown", analysis.brown_mask),
    ):
        out[mask] = rgb[mask].astype(np.float32) * 0.5 + _TINTS[name] * 0.5
    contours, _ = cv2.findContours(
        analysis.plant_mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    bgr = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    cv2.drawContours(bgr, contours, -1, (255, 255, 255), 1)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode the overlay image")
    return buf.tobytes()
