"""Decode photos straight to analysis resolution, using libjpeg's DCT scaling."""

from __future__ import annotations

import struct

import cv2
import numpy as np

from edge.errors import ImageDecodeError

_REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
# The largest photo any supported camera takes is 64 MP (9152x6944); a header claiming
# more is refused before a decoder allocates for it (100000x100000 would be 30 GB).
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_SIDE = 16_384
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Start-of-frame markers that carry the image size (baseline, progressive, ...).
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def is_jpeg(data: bytes) -> bool:
    """True when the bytes start like a JPEG file."""
    return data[:3] == b"\xff\xd8\xff"


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's frame header, without decoding it."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ImageDecodeError("not a valid JPEG: marker expected")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            if width == 0 or height == 0:
                raise ImageDecodeError("JPEG header gives a zero image size")
            return width, height
        i += 2 + length
    raise ImageDecodeError("JPEG has no frame header (truncated or not a photo)")


def is_png(data: bytes) -> bool:
    """True when the bytes start like a PNG file."""
    return data[:8] == PNG_MAGIC


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, without decoding it."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageDecodeError("not a valid PNG: no IHDR header")
    width, height = struct.unpack(">II", data[16:24])
    if width == 0 or height == 0:
        raise ImageDecodeError("PNG header gives a zero image size")
    return width, height


def header_size(data: bytes) -> tuple[int, int]:
    """(width, height) a JPEG or PNG header claims, checked against the limits.

    Runs before every decode: only JPEG and PNG are read, and a size beyond
    MAX_IMAGE_SIDE or MAX_IMAGE_PIXELS is refused rather than allocated.
    """
    if not data:
        raise ImageDecodeError("file is empty (0 bytes)")
    if is_jpeg(data):
        size = jpeg_size(data)
    elif is_png(data):
        size = png_size(data)
    else:
        raise ImageDecodeError("not a JPEG or PNG image (unknown format or corrupt data)")
    width, height = size
    if max(width, height) > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(
            f"image claims {width}x{height} pixels; at most {MAX_IMAGE_SIDE} per side and "
            f"{MAX_IMAGE_PIXELS // 1_000_000} MP are read"
        )
    return size


def _imdecode(data: bytes, flags: int) -> np.ndarray | None:
    """cv2.imdecode with its exceptions (its own limits, odd chunks) as ImageDecodeError."""
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise ImageDecodeError(f"image could not be decoded: {str(exc).strip()[-200:]}") from None


def _check_complete(data: bytes) -> None:
    # libjpeg pads a truncated file with grey and only warns; a grey band would be
    # measured as substrate, so refuse instead.
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise ImageDecodeError("JPEG is truncated (no end-of-image marker)")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an encoded image, from its header; nothing is decoded."""
    return header_size(data)


def reduction_for(size: tuple[int, int], max_side: int) -> int:
    """Largest libjpeg scale (1, 2, 4, 8) that keeps the long side >= max_side."""
    long_side = max(size)
    for factor in (8, 4, 2):
        if long_side // factor >= max_side:
            return factor
    return 1


def fit_within(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink an RGB image (area interpolation) so its long side is <= max_side."""
    h, w = rgb.shape[:2]
    long_side = max(h, w)
    if long_side <= max_side:
        return rgb
    scale = max_side / long_side
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def decode_for_analysis(data: bytes, max_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an encoded photo to RGB with long side <= max_side; also its full size.

    A JPEG is decoded at 1/2, 1/4 or 1/8 scale inside libjpeg, which is several
    times faster than a full decode followed by a resize.
    """
    full = header_size(data)
    if is_jpeg(data):
        _check_complete(data)
        bgr = _imdecode(data, _REDUCED_FLAGS[reduction_for(full, max_side)])
    else:
        bgr = _imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None or bgr.size == 0:
        raise ImageDecodeError("image data is corrupt and could not be decoded")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return fit_within(rgb, max_side), full


def decode_full(data: bytes) -> np.ndarray:
    """Decode an encoded image at full resolution to RGB."""
    header_size(data)
    bgr = _imdecode(data, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError("image data is corrupt and could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
