"""Canopy measurement from a photo: plant mask, cover, colour, exposure, sharpness."""

from edge.vision.background import BackgroundModel
from edge.vision.canopy import Analysis, CanopyMetrics, ExposureCheck, Rules, analyze
from edge.vision.decode import decode_for_analysis, image_size
from edge.vision.light import LightReading, read_light
from edge.vision.overlay import render_overlay

__all__ = [
    "Analysis",
    "BackgroundModel",
    "CanopyMetrics",
    "ExposureCheck",
    "LightReading",
    "Rules",
    "analyze",
    "decode_for_analysis",
    "image_size",
    "read_light",
    "render_overlay",
]
