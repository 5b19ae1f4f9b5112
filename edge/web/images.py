"""Photos for the page: stored files as they are, or smaller copies made on demand.

Phones on a grow-room network should not pull a 12 MP photo for a thumbnail, so
resized copies are made at reduced resolution inside libjpeg and kept in a small
in-memory cache (photos never change once stored).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path

import cv2

from edge.errors import ImageDecodeError
from edge.vision.decode import decode_for_analysis

SIZES = {"thumb": 320, "medium": 960}
JPEG_QUALITY = 78


class ResizedCache:
    """Resized JPEGs keyed by (path, size), least recently used out, bounded in bytes."""

    def __init__(self, max_bytes: int = 16 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Path, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: Path, max_side: int) -> bytes:
        """The photo at `path` shrunk to `max_side`; raises OSError or ImageDecodeError."""
        key = (path, max_side)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                return hit
        data = _resize(path.read_bytes(), max_side)
        with self._lock:
            if key not in self._items:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self.max_bytes and self._items:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
        return data


def _resize(data: bytes, max_side: int) -> bytes:
    rgb, _ = decode_for_analysis(data, max_side)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ImageDecodeError("OpenCV could not encode the resized photo")
    return bytes(buf.tobytes())
