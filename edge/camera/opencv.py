"""USB/V4L2 cameras and GStreamer pipelines (Jetson CSI) through OpenCV."""

from __future__ import annotations

from typing import Any, Literal

import cv2
from pydantic import Field

from edge.camera.base import CameraSettings, Exposure, Frame
from edge.clock import Clock
from edge.errors import CameraError


class OpenCVCameraSettings(CameraSettings):
    """A V4L2 device or a GStreamer pipeline string, opened with OpenCV."""

    backend: Literal["opencv"] = Field(description="Camera backend.")
    source: int | str = Field(
        0,
        description=(
            "V4L2 device index (0) or path (/dev/video0), a video file, or a GStreamer "
            "pipeline ending in appsink (used when the string contains '!')."
        ),
    )
    width: int | None = Field(None, ge=16, le=16384, description="Requested frame width.")
    height: int | None = Field(None, ge=16, le=16384, description="Requested frame height.")
    warmup_frames: int = Field(
        5, ge=0, le=200, description="Frames discarded after opening while exposure settles."
    )


class OpenCVCamera:
    """Reads frames with cv2.VideoCapture; reopens the device after a failed read."""

    name = "opencv"

    def __init__(self, settings: OpenCVCameraSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self._cap: Any = None
        self._open()

    def _describe(self) -> str:
        return f"opencv camera {self.settings.source!r}"

    def _open(self) -> None:
        s = self.settings
        source: int | str = s.source
        if isinstance(source, str) and source.isdigit():
            source = int(source)
        if isinstance(source, str) and "!" in source:
            cap = cv2.VideoCapture(source, cv2.CAP_GSTREAMER)
        else:
            cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"{self._describe()} could not be opened (unplugged, busy, or wrong)")
        if s.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
        if s.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
        for _ in range(s.warmup_frames):
            cap.grab()
        self._cap = cap

    def capture(self) -> Frame:
        """Read one frame; a failed read closes the device so the next call reopens it."""
        if self._cap is None:
            self._open()
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self.close()
            raise CameraError(f"{self._describe()} returned no frame")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        exposure_raw = self._cap.get(cv2.CAP_PROP_EXPOSURE)
        return Frame(
            captured_at=self._clock.now(),
            width=int(rgb.shape[1]),
            height=int(rgb.shape[0]),
            pixels=rgb,
            exposure=Exposure(exposure_time_us=float(exposure_raw) if exposure_raw > 0 else None),
            source=str(self.settings.source),
        )

    def close(self) -> None:
        """Release the device."""
        if self._cap is not None:
            self._cap.release()
            self._cap = None
