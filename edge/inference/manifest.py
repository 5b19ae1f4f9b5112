"""Reading the model manifest and checking model files against it."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.inference.errors import ManifestError, ModelIntegrityError

log = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"
OUTPUT_KINDS = ("probabilities", "logits")
OUTPUT_TENSORS = ("probabilities", "logits", "embedding")
OOD_METHODS = ("max_softmax", "energy", "mahalanobis", "mahalanobis_exposure")


@dataclass(frozen=True)
class ModelFile:
    """One model file listed in the manifest with its expected sha256."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class OodSpec:
    """How to score "unlike the training data": method, threshold and fitted arrays."""

    method: str
    threshold: float
    arrays: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelManifest:
    """The parts of manifest.json the runtime relies on."""

    name: str
    version: str
    labels: tuple[str, ...]
    input_size: int
    output_kind: str
    files: dict[str, ModelFile]
    output_tensors: dict[str, dict[str, str]] = field(default_factory=dict)
    temperature: float = 1.0
    ood: OodSpec | None = None

    def file(self, variant: str) -> ModelFile:
        """Return the model file for ``variant`` (e.g. "int8", "float")."""
        try:
            return self.files[variant]
        except KeyError:
            known = ", ".join(sorted(self.files))
            raise ManifestError(
                f"model variant {variant!r} not in manifest (has: {known})"
            ) from None


def _require(data: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    value = data.get(key)
    if not isinstance(value, kind):
        raise ManifestError(f"{where}: field {key!r} missing or not a {kind.__name__}")
    return value


def _read_labels(model_dir: Path, listed: list[str], where: Path) -> tuple[str, ...]:
    labels_path = model_dir / LABELS_NAME
    if labels_path.exists():
        from_file = [ln.strip() for ln in labels_path.read_text(encoding="utf-8").splitlines()]
        from_file = [ln for ln in from_file if ln]
        if from_file != listed:
            raise ManifestError(f"{labels_path} does not match the labels in {where}")
    if not listed or len(set(listed)) != len(listed):
        raise ManifestError(f"{where}: labels must be a non-empty list of unique names")
    return tuple(listed)


def decode_array(entry: object, where: str) -> npt.NDArray[np.float32]:
    """Decode {"dtype", "shape", "base64"} (little-endian) into a float32 array."""
    if not isinstance(entry, dict):
        raise ManifestError(f"{where} must be an object with dtype, shape and base64")
    dtype, shape, data = entry.get("dtype"), entry.get("shape"), entry.get("base64")
    if dtype not in ("float16", "float32") or not isinstance(data, str):
        raise ManifestError(f"{where}: dtype must be float16 or float32 and base64 a string")
    if not isinstance(shape, list) or not all(isinstance(n, int) and n > 0 for n in shape):
        raise ManifestError(f"{where}: shape must be a list of positive integers")
    try:
        raw = base64.b64decode(data, validate=True)
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape)
    except ValueError as exc:
        raise ManifestError(f"{where}: cannot decode array: {exc}") from exc
    return array.astype(np.float32)


def encode_array(array: npt.ArrayLike, dtype: str = "float32") -> dict[str, object]:
    """The manifest form of an array (see decode_array)."""
    values = np.ascontiguousarray(np.asarray(array, dtype=np.dtype(dtype).newbyteorder("<")))
    return {
        "dtype": dtype,
        "shape": list(values.shape),
        "base64": base64.b64encode(values.tobytes()).decode("ascii"),
    }


def _output_tensors(output: dict[str, Any], where: Path) -> dict[str, dict[str, str]]:
    tensors = output.get("tensors", {})
    ok = isinstance(tensors, dict) and all(
        isinstance(names, dict)
        and all(k in OUTPUT_TENSORS and isinstance(v, str) for k, v in names.items())
        for names in tensors.values()
    )
    if not ok:
        raise ManifestError(
            f"{where}: output.tensors must map each variant to {{{', '.join(OUTPUT_TENSORS)}}} "
            "tensor names"
        )
    return {variant: dict(names) for variant, names in tensors.items()}


def _temperature(data: dict[str, Any], where: Path) -> float:
    calibration = data.get("calibration")
    if calibration is None:
        log.info("%s has no calibration: scores are used as the model gives them", where)
        return 1.0
    value = calibration.get("temperature") if isinstance(calibration, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ManifestError(f"{where}: calibration.temperature missing or not a number")
    if not math.isfinite(value) or value <= 0:
        raise ManifestError(f"{where}: calibration.temperature must be positive, got {value}")
    return float(value)


def _ood(data: dict[str, Any], where: Path) -> OodSpec | None:
    ood = data.get("ood")
    if ood is None:
        log.info("%s has no out-of-distribution settings: every image counts as assessed", where)
        return None
    if not isinstance(ood, dict):
        raise ManifestError(f"{where}: ood must be an object")
    method = _require(ood, "method", str, where)
    if method not in OOD_METHODS:
        raise ManifestError(f"{where}: ood.method must be one of {OOD_METHODS}, got {method!r}")
    threshold = ood.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ManifestError(f"{where}: ood.threshold missing or not a number")
    arrays = {
        name: decode_array(entry, f"{where}: ood.arrays.{name}")
        for name, entry in (ood.get("arrays") or {}).items()
    }
    return OodSpec(method, float(threshold), arrays)


def read_manifest(model_dir: Path) -> ModelManifest:
    """Parse ``model_dir/manifest.json``; raise ManifestError when it is unusable."""
    where = model_dir / MANIFEST_NAME
    try:
        data = json.loads(where.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"cannot read model manifest {where}: {exc}") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: expected a JSON object")
    labels = _read_labels(model_dir, _require(data, "labels", list, where), where)
    size = _require(_require(data, "input", dict, where), "size", list, where)
    if len(size) != 2 or size[0] != size[1] or not isinstance(size[0], int) or size[0] <= 0:
        raise ManifestError(f"{where}: input.size must be a square [n, n], got {size}")
    output = _require(data, "output", dict, where)
    output_kind = _require(output, "kind", str, where)
    if output_kind not in OUTPUT_KINDS:
        raise ManifestError(f"{where}: output.kind must be one of {OUTPUT_KINDS}")
    files: dict[str, ModelFile] = {}
    for variant, entry in _require(data, "files", dict, where).items():
        if not isinstance(entry, dict):
            raise ManifestError(f"{where}: files.{variant} must be an object")
        rel = _require(entry, "file", str, where)
        digest = _require(entry, "sha256", str, where).lower()
        if Path(rel).name != rel:
            raise ManifestError(f"{where}: files.{variant}.file must be a plain file name")
        files[variant] = ModelFile(model_dir / rel, digest)
    tensors = _output_tensors(output, where)
    return ModelManifest(
        name=_require(data, "name", str, where),
        version=_require(data, "version", str, where),
        labels=labels,
        input_size=size[0],
        output_kind=output_kind,
        files=files,
        output_tensors=tensors,
        temperature=_temperature(data, where),
        ood=_ood(data, where),
    )


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_verified(model_file: ModelFile) -> bytes:
    """Read a model file and return its bytes only if its sha256 matches the manifest."""
    try:
        content = model_file.path.read_bytes()
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read model file {model_file.path}: {exc}") from exc
    actual = sha256_hex(content)
    if actual != model_file.sha256:
        raise ModelIntegrityError(
            f"model file {model_file.path} failed its integrity check: "
            f"expected sha256 {model_file.sha256}, got {actual}"
        )
    return content
