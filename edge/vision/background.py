"""What a fixed camera's empty scene looks like, learnt from its first captures.

A fixed camera sees the same tent wall, bench and pots in every photo. Pixels that
look the same across the first captures of a grow (and were not green leaf in any), or
that an "empty scene" capture shows, are background: yellow or brown there is the
cardboard or the wood, never a leaf. Reset it with the grow baseline, when the
camera or the room changes.

Given a file, the model is kept there (written atomically whenever it changes) so it
survives a restart; a model another process wrote there (the command line's
`capture-empty-scene` while the agent runs) is picked up at the next capture.
"""

from __future__ import annotations

import io
import logging
import threading
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from edge.store import write_atomic

log = logging.getLogger(__name__)
# A pixel matches the background when every channel is this close to it (0-255).
MATCH_TOLERANCE = 18
LEARN_CAPTURES = 5
MAX_SIDE = 4096  # the analysis resolution's upper bound (vision.analysis_max_side)
FORMAT_VERSION = 1


class BackgroundModel:
    """Per-pixel background colour at analysis resolution; thread-safe."""

    def __init__(self, learn_captures: int = LEARN_CAPTURES, path: Path | None = None) -> None:
        self._learn = learn_captures
        self._lock = threading.Lock()
        self._frames: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._model: np.ndarray | None = None
        self._known: np.ndarray | None = None
        self._empty_at: datetime | None = None
        self._path = path
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of the file last read
        if path is not None:
            with self._lock:
                self._reload()

    @property
    def ready(self) -> bool:
        """Whether a background is known (learnt or captured empty)."""
        with self._lock:
            self._sync()
            return self._model is not None

    @property
    def empty_scene_at(self) -> datetime | None:
        """When the empty scene in use was captured (None: none, or learnt only)."""
        with self._lock:
            self._sync()
            return self._empty_at

    def reset(self) -> None:
        """Forget the background; the next captures learn it again."""
        with self._lock:
            self._frames, self._masks = [], []
            self._model = self._known = None
            self._empty_at = None
            if self._path is not None:
                try:
                    self._path.unlink(missing_ok=True)
                except OSError as exc:
                    log.error("stored background not deleted", extra={"error": str(exc)})
                self._seen = None

    def capture_empty(self, rgb: np.ndarray, taken_at: datetime | None = None) -> None:
        """Take this frame (no plants in view) as the whole background.

        `rgb` is the frame as analysis compares it: decoded at analysis resolution and
        white-balanced (`edge.vision.canopy.balanced_frame`).
        """
        with self._lock:
            self._model = cv2.GaussianBlur(rgb, (5, 5), 0).astype(np.int16)
            self._known = np.ones(rgb.shape[:2], bool)
            self._frames, self._masks = [], []
            self._empty_at = taken_at or datetime.now(timezone.utc)
            self._save()

    def learn(self, rgb: np.ndarray, green_leaf: np.ndarray) -> None:
        """Add one capture; pixels that stay alike and are never green leaf become background."""
        with self._lock:
            self._sync()
            if self._model is not None and self._frames == []:
                return
            if self._frames and self._frames[0].shape != rgb.shape:
                self._frames, self._masks = [], []  # the resolution changed: start again
            self._frames.append(cv2.GaussianBlur(rgb, (5, 5), 0).astype(np.int16))
            self._masks.append(green_leaf.copy())
            if len(self._frames) < self._learn:
                return
            stack = np.stack(self._frames)
            median = np.median(stack, axis=0).astype(np.int16)
            spread = np.abs(stack - median).max(axis=(0, 3))
            never_leaf = ~np.any(np.stack(self._masks), axis=0)
            self._model = median
            self._known = (spread <= MATCH_TOLERANCE) & never_leaf
            self._frames, self._masks = [], []
            self._save()

    def matches(self, rgb: np.ndarray) -> np.ndarray:
        """Pixels that look like the known background (all False until one is known)."""
        with self._lock:
            self._sync()
            model, known = self._model, self._known
        if model is None or known is None or model.shape != rgb.shape:
            return np.zeros(rgb.shape[:2], bool)
        diff = np.abs(cv2.GaussianBlur(rgb, (5, 5), 0).astype(np.int16) - model).max(axis=2)
        return known & (diff <= MATCH_TOLERANCE)

    # -- the file ----------------------------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        assert self._path is not None
        try:
            st = self._path.stat()
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size

    def _sync(self) -> None:
        """Read the file again when another process replaced it (lock held)."""
        if self._path is not None and self._stamp() != self._seen:
            self._reload()

    def _save(self) -> None:
        """Write the model to its file (lock held); a failure is logged, never raised."""
        if self._path is None or self._model is None or self._known is None:
            return
        buf = io.BytesIO()
        taken = self._empty_at.isoformat() if self._empty_at else ""
        np.savez_compressed(
            buf,
            version=np.array(FORMAT_VERSION),
            model=self._model.astype(np.uint8),
            known=self._known,
            empty_at=np.array(taken),
        )
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self._path, buf.getvalue())
        except OSError as exc:
            log.error("background not stored; it is kept until restart", extra={"error": str(exc)})
            return
        self._seen = self._stamp()

    def _reload(self) -> None:
        """Load the file (lock held); a missing or unreadable one leaves no background."""
        self._seen = self._stamp()
        self._model = self._known = None
        self._empty_at = None
        self._frames, self._masks = [], []
        if self._seen is None:
            return
        assert self._path is not None
        try:
            model, known, empty_at = _read(self._path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            log.warning(
                "stored background unreadable; learning it again",
                extra={"path": str(self._path), "error": str(exc)},
            )
            return
        self._model, self._known, self._empty_at = model, known, empty_at


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, datetime | None]:
    """The model, known-pixel mask and empty-scene time in a background file; ValueError if bad."""
    with np.load(path, allow_pickle=False) as data:
        if int(data["version"]) != FORMAT_VERSION:
            raise ValueError(f"unknown background file version {int(data['version'])}")
        model, known, taken = data["model"], data["known"], str(data["empty_at"])
    if model.dtype != np.uint8 or model.ndim != 3 or model.shape[2] != 3:
        raise ValueError("background image is not an 8-bit RGB image")
    if max(model.shape[:2]) > MAX_SIDE or known.dtype != bool or known.shape != model.shape[:2]:
        raise ValueError("background mask does not match its image")
    return model.astype(np.int16), known, datetime.fromisoformat(taken) if taken else None
