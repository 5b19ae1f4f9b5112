"""On-device plant-health inference with LiteRT (no TensorFlow needed)."""

from __future__ import annotations

from edge.inference.classifier import (
    Assessment,
    HealthPrediction,
    ModelInfo,
    PlantHealthClassifier,
    QuantParams,
    bundled_model_dir,
    load_classifier,
)
from edge.inference.errors import (
    DelegateError,
    ManifestError,
    ModelIntegrityError,
    RuntimeUnavailableError,
)

__all__ = [
    "Assessment",
    "DelegateError",
    "HealthPrediction",
    "ManifestError",
    "ModelInfo",
    "ModelIntegrityError",
    "PlantHealthClassifier",
    "QuantParams",
    "RuntimeUnavailableError",
    "bundled_model_dir",
    "load_classifier",
]
