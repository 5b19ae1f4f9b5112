"""The plant-health classifier: preprocessing, invoke and decoding of scores."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge.errors import ModelError
from edge.inference.errors import ManifestError
from edge.inference.manifest import ModelManifest, read_manifest
from edge.inference.ood import OodScorer
from edge.inference.preprocess import check_rgb, quantize_lut, resize_square
from edge.inference.runtime import OpenedModel, open_model

BUNDLED_DIR_NAME = "bundled_model"
CHUNK = 4  # images per invoke of the batch interpreter (see PlantHealthClassifier._chunks)


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


@dataclass(frozen=True)
class Assessment:
    """Calibrated verdict on one image, with how unlike the training data it is.

    ``label`` is the argmax even when ``in_distribution`` is False; callers decide what an
    out-of-distribution verdict means. ``embedding`` (L2-normalised, for drift) is left out
    of equality and repr.
    """

    label: str
    confidence: float
    scores: dict[str, float]
    ood_score: float
    in_distribution: bool
    embedding: npt.NDArray[np.float32] = field(compare=False, repr=False)


@dataclass(frozen=True)
class _Outputs:
    """Dequantized outputs of one batched invoke."""

    probs: npt.NDArray[np.float64]
    logits: npt.NDArray[np.float64]
    embeddings: npt.NDArray[np.float32]
    ood: npt.NDArray[np.float64]


def _dequantize(raw: npt.NDArray[Any], quant: QuantParams, quantized: bool) -> Any:
    values = raw.astype(np.float64)
    if quantized:
        values = (values - quant.zero_point) * quant.scale
    return values


def _softmax(logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True), dtype=np.float64)


def _l2_normalise(rows: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    rows = rows.astype(np.float32)
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return np.asarray(rows / np.maximum(norms, 1e-12), dtype=np.float32)


class PlantHealthClassifier:
    """Classifies RGB images with a loaded plant-health TFLite model (not re-entrant; locked).

    Scores are temperature-scaled with the manifest's temperature (1 for manifests
    without calibration) and every image gets an out-of-distribution score (0, always
    "in distribution", for manifests without out-of-distribution settings).
    """

    def __init__(self, opened: OpenedModel, manifest: ModelManifest) -> None:
        self._interpreter = opened.interpreter
        self._labels = manifest.labels
        self._logits_only = manifest.output_kind == "logits"
        self.temperature = manifest.temperature
        self.info = ModelInfo(
            manifest.name, manifest.version, opened.backend, opened.model_file.sha256
        )
        in_detail = self._interpreter.get_input_details()[0]
        size = manifest.input_size
        if tuple(in_detail["shape"]) != (1, size, size, 3):
            raise ManifestError(
                f"model input shape {tuple(in_detail['shape'])} does not match manifest size {size}"
            )
        outputs = self._interpreter.get_output_details()
        by_name = {d["name"]: d for d in outputs}
        chosen: dict[str, dict[str, Any]] = {}
        variant = opened.variant
        names = manifest.output_tensors.get(variant) or manifest.output_tensors.get("int8", {})
        for kind, name in names.items():
            if name not in by_name:
                raise ManifestError(
                    f"model {opened.model_file.path.name} has no output tensor {name!r} "
                    f"(output.tensors.{variant}.{kind})"
                )
            chosen[kind] = by_name[name]
        main = chosen.get("probabilities", outputs[0])
        if self._logits_only:
            chosen.setdefault("logits", main)
        n = len(self._labels)
        for kind in ("probabilities", "logits"):
            detail = chosen.get(kind, main)
            if tuple(detail["shape"]) != (1, n):
                raise ManifestError(
                    f"model output shape {tuple(detail['shape'])} does not match {n} labels"
                )
        embedding = chosen.get("embedding")
        if embedding is not None and (
            len(embedding["shape"]) != 2 or int(embedding["shape"][0]) != 1
        ):
            raise ManifestError(f"embedding output shape {tuple(embedding['shape'])} is not (1, D)")
        self.input_size = size
        self.input_quant = _quant_params(in_detail)
        self.output_quant = _quant_params(main)
        self._in_index = int(in_detail["index"])
        self._main = main
        self._logit_detail = chosen.get("logits")
        self._embedding_detail = embedding
        self._embedding_size = n if embedding is None else int(embedding["shape"][1])
        self._ood = OodScorer(manifest.ood, self.temperature)
        self._ood.check_embedding_size(self._embedding_size)
        needs = {
            "energy": "logits",
            "mahalanobis": "embedding",
            "mahalanobis_exposure": "embedding",
        }.get("" if manifest.ood is None else manifest.ood.method)
        if needs is not None and needs not in chosen:
            raise ManifestError(
                f"ood method {manifest.ood.method} needs the {needs} output "  # type: ignore[union-attr]
                f"(output.tensors.{variant}.{needs})"
            )
        self._lut = quantize_lut(
            self.input_quant.scale, self.input_quant.zero_point, in_detail["dtype"]
        )
        self._in_dtype = in_detail["dtype"]
        self._square = np.empty((size, size, 3), dtype=np.uint8)
        self._input = np.empty((1, size, size, 3), dtype=self._in_dtype)
        self._reopen = opened.reopen
        self._batch: Any = None
        self._batch_input = np.empty((0, size, size, 3), dtype=self._in_dtype)
        self._lock = threading.Lock()

    @property
    def labels(self) -> tuple[str, ...]:
        """Label names in model output order."""
        return self._labels

    @property
    def embedding_size(self) -> int:
        """Length of Assessment.embedding: the penultimate layer, else one value per label."""
        return self._embedding_size

    @property
    def ood_scorer(self) -> OodScorer:
        """The out-of-distribution scorer assess() applies (exposed for benchmarks)."""
        return self._ood

    @property
    def ood_threshold(self) -> float:
        """Out-of-distribution scores above this are "not like the training data"."""
        return self._ood.threshold

    def _read(self, interpreter: Any, detail: dict[str, Any]) -> Any:
        quantized = np.dtype(detail["dtype"]).kind in "iu"
        raw = interpreter.get_tensor(int(detail["index"]))
        return _dequantize(raw, _quant_params(detail), quantized)

    def _resized(self, interpreter: Any, count: int) -> npt.NDArray[Any]:
        interpreter.resize_tensor_input(
            self._in_index, [count, self.input_size, self.input_size, 3]
        )
        interpreter.allocate_tensors()
        return np.empty((count, self.input_size, self.input_size, 3), self._in_dtype)

    def _chunks(self, count: int) -> list[tuple[Any, npt.NDArray[Any], int, int]]:
        """(interpreter, input buffer, first, count) per invoke for a batch of ``count``.

        On the CPU (when the runtime can build a second interpreter) a batch runs as
        chunks of CHUNK images through a second interpreter sized once, and the rest one
        by one through the interpreter as loaded: no tensors are ever reallocated, however
        the batch size changes from photo to photo (a cached canopy sends a few changed
        zones), and memory stays that of a CHUNK batch. Batches are no cheaper per image
        than single invokes on a CPU (bench/inference.py), so nothing is lost. With one
        interpreter only (a hardware delegate) it is resized to the batch when that changes.
        """
        if self._reopen is None:
            if self._input.shape[0] != count:
                self._input = self._resized(self._interpreter, count)
            return [(self._interpreter, self._input, 0, count)]
        full = count // CHUNK if count >= CHUNK else 0
        if full and self._batch is None:
            self._batch = self._reopen()
            self._batch_input = self._resized(self._batch, CHUNK)
        plan = [(self._batch, self._batch_input, i * CHUNK, CHUNK) for i in range(full)]
        plan += [(self._interpreter, self._input, i, 1) for i in range(full * CHUNK, count)]
        return plan

    def _run(
        self, interpreter: Any, batch: npt.NDArray[Any], rgbs: Sequence[npt.NDArray[np.uint8]]
    ) -> tuple[Any, Any, Any]:
        for i, rgb in enumerate(rgbs):
            resize_square(rgb, self.input_size, out=self._square)
            cv2.LUT(self._square, self._lut, dst=batch[i])
        interpreter.set_tensor(self._in_index, batch)
        interpreter.invoke()
        main = self._read(interpreter, self._main)
        logits = None if self._logit_detail is None else self._read(interpreter, self._logit_detail)
        emb = (
            None
            if self._embedding_detail is None
            else self._read(interpreter, self._embedding_detail)
        )
        return main, logits, emb

    def _invoke(self, rgbs: Sequence[npt.NDArray[np.uint8]]) -> _Outputs:
        for rgb in rgbs:
            check_rgb(rgb)
        with self._lock:
            parts = [
                self._run(interpreter, batch, rgbs[first : first + count])
                for interpreter, batch, first, count in self._chunks(len(rgbs))
            ]
        main = np.concatenate([p[0] for p in parts])
        logits = None if parts[0][1] is None else np.concatenate([p[1] for p in parts])
        emb = None if parts[0][2] is None else np.concatenate([p[2] for p in parts])
        if not np.all(np.isfinite(main)) or (
            logits is not None and not np.all(np.isfinite(logits))
        ):
            raise ModelError("model produced no usable scores")
        if logits is None:
            probs = np.clip(main, 0.0, None)
            totals = probs.sum(axis=-1, keepdims=True)
            if np.any(totals <= 0.0):
                raise ModelError("model produced no usable scores")
            probs = probs / totals
            # Without logits, log-probabilities stand in for them (exact up to a constant).
            logits = np.log(np.clip(probs, 1e-6, None))
            if self.temperature != 1.0:
                probs = _softmax(logits / self.temperature)
        else:
            probs = _softmax(logits / self.temperature)
        if emb is None:
            emb = np.log(np.clip(probs, 1e-6, None))
        embeddings = _l2_normalise(emb)
        return _Outputs(probs, logits, embeddings, self._ood(probs, logits, embeddings))

    def _empty_check(self, rgbs: Sequence[npt.NDArray[np.uint8]]) -> None:
        if len(rgbs) == 0:
            raise ValueError("expected at least one image")

    def assess_batch(self, rgbs: Sequence[npt.NDArray[np.uint8]]) -> list[Assessment]:
        """Assess uint8 HxWx3 RGB images (centre square of each) in one batched invoke."""
        self._empty_check(rgbs)
        out = self._invoke(rgbs)
        threshold = self._ood.threshold
        result = []
        for probs, ood, emb in zip(out.probs, out.ood, out.embeddings, strict=True):
            best = int(np.argmax(probs))
            scores = {label: float(p) for label, p in zip(self._labels, probs, strict=True)}
            result.append(
                Assessment(
                    label=self._labels[best],
                    confidence=float(probs[best]),
                    scores=scores,
                    ood_score=float(ood),
                    in_distribution=bool(ood <= threshold),
                    embedding=emb,
                )
            )
        return result

    def assess(self, rgb: npt.NDArray[np.uint8]) -> Assessment:
        """Assess one uint8 HxWx3 RGB image of any size (centre square crop)."""
        return self.assess_batch([rgb])[0]

    def features(
        self, rgbs: Sequence[npt.NDArray[np.uint8]]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float32]]:
        """Calibrated probabilities, raw logits and embeddings of a batch (for fitting)."""
        self._empty_check(rgbs)
        out = self._invoke(rgbs)
        return out.probs, out.logits, out.embeddings

    def scores_array(self, rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float64]:
        """Calibrated probabilities for ``rgb`` (uint8 HxWx3 RGB) in label order."""
        return self._invoke([rgb]).probs[0]

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
