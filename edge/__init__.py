"""CultivAI Edge: the plant-camera agent that runs on the device."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cultivai-edge")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
