"""Reading the model manifest and checking model files against it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.inference.errors import ManifestError, ModelIntegrityError

MANIFEST_NAME = "manifest.json"
LABELS_NAME = "labels.txt"
OUTPUT_KINDS = ("probabilities", "logits")


@dataclass(frozen=True)
class ModelFile:
    """One model file listed in the manifest with its expected sha256."""

    path: Path
    sha256: str


@dataclass(frozen=True)
class ModelManifest:
    """The parts of manifest.json the runtime relies on."""

    name: str
    version: str
    labels: tuple[str, ...]
    input_size: int
    output_kind: str
    files: dict[str, ModelFile]

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
    output_kind = _require(_require(data, "output", dict, where), "kind", str, where)
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
    return ModelManifest(
        name=_require(data, "name", str, where),
        version=_require(data, "version", str, where),
        labels=labels,
        input_size=size[0],
        output_kind=output_kind,
        files=files,
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
