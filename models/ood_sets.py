"""Out-of-distribution images that can be made without any photo: the stand-ins the
out-of-distribution score is measured on (rendered canopies, textures, blank frames,
non-leaf scenes and colour-shifted leaves)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import numpy.typing as npt

from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings

U8 = npt.NDArray[np.uint8]


def synthetic_canopies(count: int, seed: int) -> Iterator[U8]:
    """Synthetic-camera canopies, young to yellowing: whole 1280x960 frames and 160-px tiles
    with plant in them from the 640x480 analysis image (what the device classifies)."""
    for i in range(count):
        settings = SyntheticCameraSettings(
            plants=1 + i % 6, seed=seed + i, yellowing_onset_day=20.0
        )
        camera = SyntheticCamera(settings, clock=None)  # type: ignore[arg-type]
        image, mask = camera.render(6.0 + 2.0 * (i % 12))
        if i % 3 == 0:
            yield image
            continue
        small = cv2.resize(image, (640, 480), interpolation=cv2.INTER_AREA)
        cover = cv2.resize(mask.astype(np.float32), (640, 480), interpolation=cv2.INTER_AREA)
        cells = [(y, x) for y in range(0, 480, 160) for x in range(0, 640, 160)]
        planted = [c for c in cells if cover[c[0] : c[0] + 160, c[1] : c[1] + 160].mean() > 0.2]
        y, x = (planted or cells)[i % len(planted or cells)]
        yield np.ascontiguousarray(small[y : y + 160, x : x + 160])


def textures(count: int, seed: int) -> Iterator[U8]:
    """Random noise at several scales, some tinted, some grey."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        scale = int(rng.choice([1, 4, 16, 48]))
        small = rng.integers(0, 256, (max(1, 224 // scale),) * 2 + (3,), dtype=np.uint8)
        image = cv2.resize(small, (224, 224), interpolation=cv2.INTER_CUBIC)
        if i % 3 == 0:
            image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
        yield np.ascontiguousarray(image)


def blank_frames() -> Iterator[U8]:
    """Uniform frames: black, dark grey, mid grey, white and a few flat colours."""
    for colour in ((0, 0, 0), (8, 8, 8), (20, 18, 16), (128, 128, 128), (255, 255, 255),
                   (60, 120, 40), (200, 60, 40), (40, 40, 200)):  # fmt: skip
        yield np.full((224, 224, 3), colour, dtype=np.uint8)


def scenes(count: int, seed: int) -> Iterator[U8]:
    """Rendered non-leaf scenes: shapes, stripes, checkerboards, gradients, text."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        image = np.full((224, 224, 3), rng.integers(0, 256, 3), dtype=np.uint8)
        kind = i % 4
        if kind == 0:
            for _ in range(8):
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                p1, p2 = rng.integers(0, 224, 2), rng.integers(0, 224, 2)
                cv2.rectangle(image, tuple(map(int, p1)), tuple(map(int, p2)), colour, -1)
        elif kind == 1:
            period = int(rng.integers(6, 40))
            yy, xx = np.mgrid[0:224, 0:224]
            board = ((yy // period + xx // period) % 2).astype(bool)
            image[board] = rng.integers(0, 256, 3)
        elif kind == 2:
            ramp = np.linspace(0, 1, 224, dtype=np.float32)[None, :, None]
            a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
            image = np.broadcast_to(a + (b - a) * ramp, (224, 224, 3)).astype(np.uint8)
        else:
            for row in range(6):
                colour = tuple(int(c) for c in rng.integers(0, 256, 3))
                cv2.putText(image, "CultivAI 2026", (4, 30 + 36 * row),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.8, colour, 2)  # fmt: skip
        yield np.ascontiguousarray(image)


def colour_shifted(leaves: Sequence[U8]) -> Iterator[U8]:
    """Leaves under impossible light: channel swaps, inverted colours, extreme tints."""
    for i, leaf in enumerate(leaves):
        kind = i % 4
        if kind == 0:
            yield np.ascontiguousarray(leaf[..., ::-1])
        elif kind == 1:
            yield 255 - leaf
        elif kind == 2:
            yield np.ascontiguousarray(leaf[..., [1, 2, 0]])
        else:
            tint = np.array([0.25, 0.35, 1.8], dtype=np.float32)
            yield np.clip(leaf * tint, 0, 255).astype(np.uint8)


def dark_frames(leaves: Sequence[U8]) -> Iterator[U8]:
    """Leaves with the lights nearly off (5 % of the light, sensor noise)."""
    rng = np.random.default_rng(7)
    for leaf in leaves:
        dim = leaf.astype(np.float32) * 0.05 + rng.normal(0, 1.5, leaf.shape)
        yield np.clip(dim, 0, 255).astype(np.uint8)
