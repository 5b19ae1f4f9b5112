"""The plant-health classifier: preprocessing, invoke and decoding of scores."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import ModelError
from edge.inference.errors import ManifestError
from edge.inference.manifest import ModelManifest, read_manifest
from edge.inference.preprocess import quantize_lut, resize_square
from edge.inference.runtime import OpenedModel, open_model

BUNDLED_DIR_NAME = "bundled_model"


@dataclass(frozen=True)
class ModelInfo:
    """Identity of the loaded model and the backend running it."""

    name: str
    version: str
    backend: str
    sha256: str


@dataclass(frozen=True)
class HealthPrediction:
    """Top label, its probability and the probability of every label."""

    label: str
    confidence: float
    scores: dict[str, float]


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization of one tensor: real = scale * (q - zero_point)."""

    scale: float
    zero_point: int


def _quant_params(detail: dict[str, Any]) -> QuantParams:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return QuantParams(float(scale), int(zero_point))


class PlantHealthClassifier:
    """Classifies RGB images with a loaded plant-health TFLite model (not re-entrant; locked)."""

    def __init__(self, opened: OpenedModel, manifest: ModelManifest) -> None:
        self._interpreter = opened.interpreter
        self._labels = manifest.labels
        self._logits = manifest.output_kind == "logits"
        self.info = ModelInfo(
            manifest.name, manifest.version, opened.backend, opened.model_file.sha256
        )
        in_detail = self._interpreter.get_input_details()[0]
        out_detail = self._interpreter.get_output_details()[0]
        size = manifest.input_size
        if tuple(in_detail["shape"]) != (1, size, size, 3):
            raise ManifestError(
                f"model input shape {tuple(in_detail['shape'])} does not match manifest size {size}"
            )
        if tuple(out_detail["shape"]) != (1, len(self._labels)):
            raise ManifestError(
                f"model output shape {tuple(out_detail['shape'])} does not match "
                f"{len(self._labels)} labels"
            )
        self.input_size = size
        self.input_quant = _quant_params(in_detail)
        self.output_quant = _quant_params(out_detail)
        self._in_index = int(in_detail["index"])
        self._out_index = int(out_detail["index"])
        self._out_quantized = np.dtype(out_detail["dtype"]).kind in "iu"
        self._lut = quantize_lut(
            self.input_quant.scale, self.input_quant.zero_point, in_detail["dtype"]
        )
        self._resized = np.empty((size, size, 3), dtype=np.uint8)
        self._input = np.empty((1, size, size, 3), dtype=in_detail["dtype"])
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        """Label names in model output order."""
        return self._labels

    def _probabilities(self, raw: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        values = raw.astype(np.float64)
        if self._out_quantized:
            values = (values - self.output_quant.zero_point) * self.output_quant.scale
        if self._logits:
            values = np.exp(values - values.max())
        values = np.clip(values, 0.0, None)
        total = float(values.sum())
        if not np.isfinite(total) or total <= 0.0:
            raise ModelError("model produced no usable scores")
        return values / total

    def scores_array(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        """Probabilities for ``rgb`` (uint8 HxWx3 RGB) in label order."""
        with self._lock:
            resize_square(rgb, self.input_size, out=self._resized)
            cv2.LUT(self._resized, self._lut, dst=self._input[0])
            self._interpreter.set_tensor(self._in_index, self._input)
            self._interpreter.invoke()
            raw = self._interpreter.get_tensor(self._out_index)[0]
        return self._probabilities(raw)

    def classify(self, rgb: npt.NDArray[np.uint8]) -> HealthPrediction:
        """Classify one uint8 HxWx3 RGB image of any size (centre square crop)."""
        probs = self.scores_array(rgb)
        best = int(np.argmax(probs))
        scores = {label: float(p) for label, p in zip(self._labels, probs, strict=True)}
        return HealthPrediction(self._labels[best], float(probs[best]), scores)


def bundled_model_dir() -> Path:
    """The shipped model folder: edge/bundled_model in a wheel, else models/plant_health."""
    edge_dir = Path(__file__).resolve().parent.parent
    bundled = edge_dir / BUNDLED_DIR_NAME
    if bundled.is_dir():
        return bundled
    return edge_dir.parent / "models" / "plant_health"


def load_classifier(
    model_dir: Path | None,
    delegate: str = "auto",
    threads: int = 2,
    *,
    variant: str = "int8",
) -> PlantHealthClassifier:
    """Verify, load and warm up the model in ``model_dir`` (None: the bundled model)."""
    folder = bundled_model_dir() if model_dir is None else Path(model_dir)
    manifest = read_manifest(folder)
    classifier = PlantHealthClassifier(open_model(manifest, variant, delegate, threads), manifest)
    try:
        classifier.scores_array(np.full((classifier.input_size,) * 2 + (3,), 128, dtype=np.uint8))
    except (ValueError, RuntimeError) as exc:
        if isinstance(exc, ModelError):
            raise
        raise ModelError(f"warm-up of model {manifest.name} in {folder} failed: {exc}") from exc
    return classifier
