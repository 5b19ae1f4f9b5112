"""What a fixed camera's empty scene looks like, learnt from its first captures.

A fixed camera sees the same tent wall, bench and pots in every photo. Pixels that
look the same across the first captures of a grow (and were not green leaf in any), or
that an "empty scene" capture shows, are background: yellow or brown there is the
cardboard or the wood, never a leaf. Reset it with the grow baseline, when the
camera or the room changes.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

# A pixel matches the background when every channel is this close to it (0-255).
MATCH_TOLERANCE = 18
LEARN_CAPTURES = 5


class BackgroundModel:
    """Per-pixel background colour at analysis resolution; thread-safe."""

    def __init__(self, learn_captures: int = LEARN_CAPTURES) -> None:
        self._learn = learn_captures
        self._lock = threading.Lock()
        self._frames: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._model: np.ndarray | None = None
        self._known: np.ndarray | None = None

    @property
    def ready(self) -> bool:
        """Whether a background is known (learnt or captured empty)."""
        with self._lock:
            return self._model is not None

    def reset(self) -> None:
        """Forget the background; the next captures learn it again."""
        with self._lock:
            self._frames, self._masks = [], []
            self._model = self._known = None

    def capture_empty(self, rgb: np.ndarray) -> None:
        """Take this frame (no plants in view) as the whole background."""
        with self._lock:
            self._model = cv2.GaussianBlur(rgb, (5, 5), 0).astype(np.int16)
            self._known = np.ones(rgb.shape[:2], bool)
            self._frames, self._masks = [], []

    def learn(self, rgb: np.ndarray, green_leaf: np.ndarray) -> None:
        """Add one capture; pixels that stay alike and are never green leaf become background."""
        with self._lock:
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

    def matches(self, rgb: np.ndarray) -> np.ndarray:
        """Pixels that look like the known background (all False until one is known)."""
        with self._lock:
            model, known = self._model, self._known
        if model is None or known is None or model.shape != rgb.shape:
            return np.zeros(rgb.shape[:2], bool)
        diff = np.abs(cv2.GaussianBlur(rgb, (5, 5), 0).astype(np.int16) - model).max(axis=2)
        return known & (diff <= MATCH_TOLERANCE)
