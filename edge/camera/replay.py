"""A camera that plays back a folder of photos in name order, looping."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from edge.camera.base import CameraSettings, Frame
from edge.clock import Clock
from edge.errors import CameraError, ImageDecodeError
from edge.vision.decode import decode_full, image_size, is_jpeg

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class ReplayCameraSettings(CameraSettings):
    """Photos from a folder, for demos and back-testing a grow."""

    backend: Literal["replay"] = Field(description="Camera backend.")
    folder: Path = Field(description="Folder of .jpg/.jpeg/.png photos, played in name order.")
    loop: bool = Field(True, description="Start again from the first photo after the last.")


class ReplayCamera:
    """Returns the folder's photos one per capture; JPEG bytes are passed on untouched."""

    name = "replay"

    def __init__(self, settings: ReplayCameraSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        folder = settings.folder
        if not folder.is_dir():
            raise CameraError(f"replay camera: folder {folder} does not exist")
        self._files = sorted(
            p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )
        if not self._files:
            raise CameraError(f"replay camera: no .jpg/.jpeg/.png photos in {folder}")
        self._next = 0

    def capture(self) -> Frame:
        """The next photo in the folder."""
        if self._next >= len(self._files):
            if not self.settings.loop:
                raise CameraError(f"replay camera: all {len(self._files)} photos played")
            self._next = 0
        path = self._files[self._next]
        self._next += 1
        try:
            data = path.read_bytes()
            width, height = image_size(data)
        except OSError as exc:
            raise CameraError(f"replay camera: cannot read {path}: {exc.strerror}") from exc
        except ImageDecodeError as exc:
            raise CameraError(f"replay camera: {path}: {exc}") from exc
        if not is_jpeg(data):
            return Frame(
                captured_at=self._clock.now(),
                width=width,
                height=height,
                pixels=decode_full(data),
                source=str(path),
            )
        return Frame(
            captured_at=self._clock.now(), width=width, height=height, jpeg=data, source=str(path)
        )

    def close(self) -> None:
        """Nothing to release."""
