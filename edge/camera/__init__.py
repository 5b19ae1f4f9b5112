"""Cameras behind one interface: synthetic, replay, OpenCV (V4L2/GStreamer), picamera2."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edge.camera.base import Camera, Exposure, Frame
from edge.camera.opencv import OpenCVCamera, OpenCVCameraSettings
from edge.camera.picamera2 import Picamera2Camera, Picamera2CameraSettings
from edge.camera.replay import ReplayCamera, ReplayCameraSettings
from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.clock import Clock

CameraConfig = Annotated[
    SyntheticCameraSettings | ReplayCameraSettings | OpenCVCameraSettings | Picamera2CameraSettings,
    Field(discriminator="backend"),
]


def open_camera(settings: CameraConfig, clock: Clock) -> Camera:
    """Open the camera the config names; raises CameraError saying why it cannot.

    picamera2 itself is imported only when that backend is opened.
    """
    if isinstance(settings, SyntheticCameraSettings):
        return SyntheticCamera(settings, clock)
    if isinstance(settings, ReplayCameraSettings):
        return ReplayCamera(settings, clock)
    if isinstance(settings, OpenCVCameraSettings):
        return OpenCVCamera(settings, clock)
    return Picamera2Camera(settings, clock)


__all__ = ["Camera", "CameraConfig", "Exposure", "Frame", "open_camera"]
