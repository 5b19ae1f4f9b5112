"""Canopy measurement from a photo: plant mask, cover, colour, exposure, sharpness."""

from edge.vision.canopy import Analysis, CanopyMetrics, ExposureCheck, analyze
from edge.vision.decode import decode_for_analysis, image_size
from edge.vision.overlay import render_overlay

__all__ = [
    "Analysis",
    "CanopyMetrics",
    "ExposureCheck",
    "analyze",
    "decode_for_analysis",
    "image_size",
    "render_overlay",
]
