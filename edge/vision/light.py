"""What light a photo was taken under, and the white balance that undoes it.

A fixed grow-room camera sees the plants under the photo light (white) or under the
grow lights: amber high-pressure sodium, magenta or blue LED. The lamp is read from
the brightest pixels of the frame (the white-patch idea, taken at a high percentile
so a few blown pixels do not decide it), then the lamp's known cast is divided out.
A reference patch (a grey card in view, its position in config) gives the exact cast
instead. When the light leaves too little of one channel, colour cannot be judged and
the colour metrics are null with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Camera RGB of a white surface under each lamp, largest channel 1 (typical values;
# a reference patch measures the real one).
LAMP_CASTS: dict[str, tuple[float, float, float]] = {
    "white": (1.0, 1.0, 1.0),
    "hps": (1.0, 0.72, 0.34),
    "magenta": (1.0, 0.45, 0.92),
    "blue": (0.55, 0.78, 1.0),
}
# Below this share of the strongest channel, a corrected channel is mostly noise.
MIN_CHANNEL_SHARE = 0.25
_PERCENTILE = 98.0


@dataclass(frozen=True, slots=True)
class LightReading:
    """The lamp a frame was taken under, the gains that correct it, and whether colour holds."""

    lamp: str  # "white", "hps", "magenta", "blue", "narrow_band" or "reference"
    cast: tuple[float, float, float]
    gains: tuple[float, float, float]
    colour_reason: str | None  # None: colour is measurable


def bright_cast(rgb: np.ndarray) -> tuple[float, float, float]:
    """Per-channel high percentile of the frame, largest channel 1."""
    sample = rgb[::4, ::4].reshape(-1, 3)
    high = np.percentile(sample, _PERCENTILE, axis=0).astype(np.float64) + 1.0
    top = float(high.max())
    r, g, b = (float(v) / top for v in high)
    return r, g, b


def classify_cast(cast: tuple[float, float, float]) -> str:
    """Name the lamp a cast comes from; thresholds sit between the lamps and white-light scenes.

    Beige cardboard and wood in white light give casts down to b/r 0.45; HPS on a
    white wall gives 0.34 and less on anything warmer.
    """
    r, g, b = cast
    if g < MIN_CHANNEL_SHARE and r > 0.5 and b > 0.5:
        return "narrow_band"
    if g < 0.62 and b > 0.6 and r > 0.6:
        return "magenta"
    if b < 0.4 and g < 0.9 and r >= max(g, b):
        return "hps"
    if b >= max(r, g) and r < 0.7:
        return "blue"
    return "white"


def read_light(
    rgb: np.ndarray, reference: tuple[float, float, float, float] | None = None
) -> LightReading:
    """Detect the lamp (or measure the reference patch) and the white-balance gains."""
    if reference is not None:
        return _from_reference(rgb, reference)
    lamp = classify_cast(bright_cast(rgb))
    if lamp == "narrow_band":
        # Still undo what cast there is: the plant stays findable even if its colour is not.
        cast = bright_cast(rgb)
        return LightReading(
            lamp,
            cast,
            (1.0 / cast[0], 1.0 / cast[1], 1.0 / cast[2]),
            "narrow-band red/blue grow light: too little green light to judge leaf colour",
        )
    cast = LAMP_CASTS[lamp]
    gains = tuple(1.0 / c for c in cast)
    return LightReading(lamp, cast, (gains[0], gains[1], gains[2]), None)


def _from_reference(rgb: np.ndarray, ref: tuple[float, float, float, float]) -> LightReading:
    h, w = rgb.shape[:2]
    x, y, rw, rh = ref
    x0, y0 = int(x * w), int(y * h)
    x1, y1 = max(x0 + 1, int((x + rw) * w)), max(y0 + 1, int((y + rh) * h))
    patch = rgb[y0:y1, x0:x1].reshape(-1, 3).astype(np.float64)
    if patch.size == 0 or patch.mean(axis=0).max() < 30 or (patch >= 250).mean() > 0.2:
        blind = "white reference patch outside the frame, too dark or blown: colour not judged"
        return LightReading("reference", (1.0, 1.0, 1.0), (1.0, 1.0, 1.0), blind)
    mean = patch.mean(axis=0)
    cast = tuple(float(v) for v in mean / mean.max())
    r, g, b = cast
    reason: str | None = None
    if min(cast) < MIN_CHANNEL_SHARE:
        reason = "the light leaves too little of one colour channel to judge leaf colour"
    return LightReading("reference", (r, g, b), (1.0 / r, 1.0 / g, 1.0 / b), reason)


def white_balance(rgb: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """The frame with the cast divided out, scaled so no channel is pushed past white."""
    if gains == (1.0, 1.0, 1.0):
        return rgb
    out = rgb.astype(np.float32) * np.asarray(gains, np.float32)
    # Keep the frame's brightest level where it was, so brightness limits keep their meaning.
    before = float(np.percentile(rgb[::4, ::4], _PERCENTILE))
    after = float(np.percentile(out[::4, ::4], _PERCENTILE)) + 1e-3
    out *= before / after
    return np.clip(out, 0, 255).astype(np.uint8)
