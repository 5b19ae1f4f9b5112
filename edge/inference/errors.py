"""Failure kinds of the on-device plant-health runtime, all subclasses of ModelError."""

from __future__ import annotations

from edge.errors import ModelError


class ModelIntegrityError(ModelError):
    """A model file is missing, unreadable, corrupt or does not match its manifest."""


class ManifestError(ModelError):
    """The model manifest or labels file is missing or invalid."""


class RuntimeUnavailableError(ModelError):
    """Neither LiteRT (ai-edge-litert) nor tflite-runtime can be imported."""


class DelegateError(ModelError):
    """A requested hardware delegate could not be loaded."""
