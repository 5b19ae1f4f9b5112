"""Opening a LiteRT / tflite-runtime interpreter with the configured delegate."""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import ModelError
from edge.inference.errors import DelegateError, ModelIntegrityError, RuntimeUnavailableError
from edge.inference.manifest import ModelFile, ModelManifest, read_verified

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
DELEGATE_WORDS = ("auto", "cpu", "edgetpu")
_DELEGATE_ERRORS = (ValueError, OSError, RuntimeError)


@dataclass(frozen=True)
class Runtime:
    """An importable TFLite interpreter implementation."""

    name: str
    interpreter_class: Any
    load_delegate: Any


@dataclass(frozen=True)
class OpenedModel:
    """An allocated interpreter together with what was loaded and how."""

    interpreter: Any
    backend: str
    model_file: ModelFile
    variant: str = "int8"
    # Builds another allocated interpreter of the same model (CPU only; None with a delegate).
    reopen: Callable[[], Any] | None = None


def import_runtime() -> Runtime:
    """Import LiteRT, falling back to tflite-runtime; raise RuntimeUnavailableError if neither."""
    try:
        from ai_edge_litert.interpreter import (  # type: ignore[import-not-found,unused-ignore]
            Interpreter,
            load_delegate,
        )

        return Runtime("litert", Interpreter, load_delegate)
    except ImportError as litert_exc:
        try:
            from tflite_runtime.interpreter import (  # type: ignore[import-not-found,unused-ignore]
                Interpreter,
                load_delegate,
            )

            return Runtime("tflite_runtime", Interpreter, load_delegate)
        except ImportError as tflite_exc:
            raise RuntimeUnavailableError(
                "no TFLite interpreter available: install LiteRT with "
                "'pip install ai-edge-litert' (or, where LiteRT has no wheel, "
                "'pip install tflite-runtime'); "
                f"ai_edge_litert: {litert_exc}; tflite_runtime: {tflite_exc}"
            ) from tflite_exc


def _load_delegate(runtime: Runtime, library: str) -> Any:
    """Load a delegate library; a library that cannot even be dlopen()ed fails with OSError.

    The dlopen check comes first because a failed load_delegate leaves a half-built
    Delegate object behind whose destructor raises.
    """
    ctypes.CDLL(library)
    return runtime.load_delegate(library)


def _edgetpu_delegate(runtime: Runtime, manifest: ModelManifest, required: bool) -> Any | None:
    """Load the Coral EdgeTPU delegate; None (CPU) when optional and unusable."""
    try:
        delegate = _load_delegate(runtime, EDGETPU_LIBRARY)
    except _DELEGATE_ERRORS as exc:
        if required:
            raise DelegateError(
                f"delegate 'edgetpu' requested but {EDGETPU_LIBRARY} could not be loaded ({exc}); "
                "install the Coral runtime (libedgetpu1-std) and attach the device, "
                "or set the delegate to 'auto' or 'cpu'"
            ) from exc
        log.debug("no EdgeTPU (%s); using the CPU", exc)
        return None
    if "edgetpu" not in manifest.files:
        if required:
            raise DelegateError(
                f"delegate 'edgetpu' requested but model {manifest.name} {manifest.version} "
                "ships no EdgeTPU-compiled file (manifest files.edgetpu)"
            )
        log.info("EdgeTPU found but the model has no EdgeTPU build; using the CPU")
        return None
    return delegate


def _path_delegate(runtime: Runtime, spec: str) -> Any:
    """Load an external delegate from a shared-library path."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DelegateError(
            f"delegate library {spec!r} not found; the delegate must be one of "
            f"{', '.join(DELEGATE_WORDS)} or the path of a delegate .so file"
        )
    try:
        return _load_delegate(runtime, str(path))
    except _DELEGATE_ERRORS as exc:
        raise DelegateError(f"delegate library {path} could not be loaded: {exc}") from exc


def open_model(manifest: ModelManifest, variant: str, delegate: str, threads: int) -> OpenedModel:
    """Verify and load one model variant with the requested delegate and thread count."""
    if not isinstance(threads, int) or threads < 1:
        raise ModelError(f"threads must be a positive integer, got {threads!r}")
    runtime = import_runtime()
    delegates: list[Any] = []
    kind = "cpu"
    if delegate in ("auto", "edgetpu"):
        tpu = _edgetpu_delegate(runtime, manifest, required=delegate == "edgetpu")
        if tpu is not None:
            delegates, kind = [tpu], "edgetpu"
            variant = "edgetpu" if variant == "int8" else variant
    elif delegate != "cpu":
        delegates, kind = [_path_delegate(runtime, delegate)], f"delegate:{Path(delegate).name}"
    model_file = manifest.file(variant)
    content = read_verified(model_file)

    def build() -> Any:
        interpreter = runtime.interpreter_class(
            model_content=content,
            num_threads=threads,
            experimental_delegates=delegates or None,
        )
        interpreter.allocate_tensors()
        return interpreter

    try:
        interpreter = build()
    except (ValueError, RuntimeError) as exc:
        raise ModelIntegrityError(
            f"model file {model_file.path} could not be loaded by {runtime.name} ({kind}): {exc}"
        ) from exc
    reopen = None if delegates else build
    return OpenedModel(interpreter, f"{runtime.name}-{kind}", model_file, variant, reopen)
