"""The one root exception of the edge agent and its failure kinds."""

from __future__ import annotations


class CultivaiError(Exception):
    """Root of every error the edge agent raises on purpose."""


class ConfigError(CultivaiError, ValueError):
    """The configuration file is missing, unreadable or invalid."""

    def __init__(self, problems: list[str], source: str = "config") -> None:
        self.problems = problems
        self.source = source
        super().__init__(f"{source}: " + "; ".join(problems))


class CameraError(CultivaiError, RuntimeError):
    """The camera could not be opened or did not deliver a frame."""


class ImageDecodeError(CultivaiError, ValueError):
    """An image file could not be read or decoded."""


class ExposureError(CultivaiError, ValueError):
    """A photo too dark or too bright for what it was taken for."""


class StorageError(CultivaiError, OSError):
    """The local store could not write or read what it was asked to."""


class ModelError(CultivaiError, RuntimeError):
    """The plant-health model could not be loaded or run."""


class GpioError(CultivaiError, RuntimeError):
    """A GPIO device could not be set up."""
