"""Grow-room scenes with exact truth: backgrounds, pots, stems, lamps and shade.

The test oracle for canopy analysis on the scenes that fool it: beige cardboard,
wood, mylar and white tent walls behind the plants, terracotta pots, amber HPS or
magenta LED light, and shade across the canopy. Each scene is rendered in white
light first (the reflectance), then lit, so the truth masks (plant, chlorotic) are
exact whatever the lamp. Real leaf photos can be composited in with their own masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

Background = Literal["soil", "cardboard", "wood", "mylar", "white_wall"]
Lamp = Literal["white", "hps", "magenta", "blue", "red_blue"]

# What each lamp does to a white surface, as camera RGB (a diagonal model, as
# white balance assumes). red_blue is a narrow-band LED with almost no green.
LAMPS: dict[str, tuple[float, float, float]] = {
    "white": (1.0, 1.0, 1.0),
    "hps": (1.0, 0.72, 0.34),
    "magenta": (1.0, 0.45, 0.92),
    "blue": (0.55, 0.78, 1.0),
    "red_blue": (1.0, 0.1, 0.9),
}
_BASE = {  # RGB reflectance colours in white light
    "soil": (96, 74, 56),
    "cardboard": (198, 168, 116),
    "wood": (168, 118, 72),
    "mylar": (196, 198, 204),
    "white_wall": (226, 226, 220),
}
_GREEN = np.array([58, 124, 42], np.float32)
_YELLOW = np.array([204, 190, 58], np.float32)
_STEM = np.array([88, 118, 52], np.float32)
_POTS = ((38, 38, 40), (172, 92, 58))  # black plastic, terracotta
GREY_CARD = (0.02, 0.02, 0.08, 0.1)  # x, y, width, height as fractions of the frame


@dataclass(frozen=True, slots=True)
class SceneSpec:
    """What a grow-room scene holds and how it is lit."""

    background: Background = "cardboard"
    lamp: Lamp = "white"
    shade: float = 0.0  # 0: even light; 0.8: the darkest corner gets 20% of the light
    plants: int = 3
    leaves: int = 9
    chlorotic_share: float = 0.0  # share of leaves that are fully chlorotic
    plant_scale: float = 1.0
    pots: bool = True
    width: int = 960
    height: int = 720
    seed: int = 0
    frame: int = 0  # another capture of the same scene: only the sensor noise differs
    sticky_trap: bool = False  # a yellow sticky insect trap hanging beside the first plant
    empty: bool = False  # the same scene with the plants taken away (pots and all else stay)
    grey_card: bool = False  # a grey reference card in the top-left corner (GREY_CARD)
    tint: tuple[float, float, float] | None = None  # this lamp's own cast, not the typical one
    leaf_photos: tuple[np.ndarray, ...] = field(default=())  # RGBA cut-outs


@dataclass(frozen=True, slots=True)
class Scene:
    """A rendered scene and its exact truth."""

    rgb: np.ndarray
    plant: np.ndarray  # bool, every plant pixel (leaves and stems)
    chlorotic: np.ndarray  # bool, the chlorotic plant pixels
    spec: SceneSpec

    @property
    def cover_pct(self) -> float:
        """True share of the frame that is plant."""
        return float(self.plant.mean() * 100.0)

    @property
    def yellow_pct(self) -> float:
        """True chlorotic share of the plant."""
        n = int(self.plant.sum())
        return float(self.chlorotic.sum() * 100.0 / n) if n else 0.0


def render_scene(spec: SceneSpec) -> Scene:
    """Render one scene: reflectance, then shade and lamp, then sensor noise."""
    rng = np.random.default_rng(spec.seed)
    h, w = spec.height, spec.width
    image = _background(spec.background, w, h, rng)
    plant = np.zeros((h, w), np.uint8)
    chlorotic = np.zeros((h, w), np.uint8)
    leaf_px = min(w, h) * 0.11 * spec.plant_scale
    centres = _centres(spec, np.random.default_rng(spec.seed + 1))
    if spec.grey_card:
        x, y, cw, ch = GREY_CARD
        cv2.rectangle(
            image,
            (int(x * w), int(y * h)),
            (int((x + cw) * w), int((y + ch) * h)),
            (150, 150, 150),
            -1,
        )
    if spec.sticky_trap and centres:
        # A saturated yellow card, leaf-sized, touching the leaves: yellow, near green and
        # no bigger than a leaf, so only the background model can tell it from chlorosis.
        cx, cy = centres[0]
        x0, y0 = int(cx + leaf_px * 1.6), int(cy - leaf_px * 0.5)
        cv2.rectangle(
            image, (x0, y0), (x0 + int(leaf_px * 0.8), y0 + int(leaf_px * 1.1)), (232, 206, 36), -1
        )
    for cx, cy in centres:
        if spec.pots:
            colour = _POTS[int(rng.integers(len(_POTS)))]
            cv2.circle(image, (cx, cy), int(leaf_px * 0.9), tuple(float(c) for c in colour), -1)
    for cx, cy in [] if spec.empty else centres:
        if spec.leaf_photos:
            _paste_leaves(spec, rng, image, plant, chlorotic, (cx, cy), leaf_px)
        else:
            _draw_plant(spec, rng, image, plant, chlorotic, (cx, cy), leaf_px)
    lit = image.astype(np.float32) * _shade_map(spec, rng)[..., None]
    lit *= np.array(spec.tint or LAMPS[spec.lamp], np.float32)
    noise = np.random.default_rng((spec.seed, spec.frame))
    lit += noise.normal(0.0, 2.5, size=lit.shape).astype(np.float32)
    rgb = np.clip(lit, 0, 255).astype(np.uint8)
    return Scene(rgb, plant > 0, (chlorotic > 0) & (plant > 0), spec)


def _centres(spec: SceneSpec, rng: np.random.Generator) -> list[tuple[int, int]]:
    cols = max(1, math.ceil(math.sqrt(spec.plants * spec.width / spec.height)))
    rows = max(1, math.ceil(spec.plants / cols))
    out = []
    for i in range(spec.plants):
        r, c = divmod(i, cols)
        x = (c + 0.5 + rng.uniform(-0.12, 0.12)) * spec.width / cols
        y = (r + 0.5 + rng.uniform(-0.12, 0.12)) * spec.height / rows
        out.append((int(x), int(y)))
    return out


def _draw_plant(
    spec: SceneSpec,
    rng: np.random.Generator,
    image: np.ndarray,
    plant: np.ndarray,
    chlorotic: np.ndarray,
    centre: tuple[int, int],
    leaf_px: float,
) -> None:
    phase = rng.uniform(0, 2 * math.pi)
    golden = math.pi * (3 - math.sqrt(5))
    stem_w = max(2, int(leaf_px * 0.05))
    for i in range(spec.leaves):
        theta = phase + i * golden
        reach = leaf_px * rng.uniform(0.9, 1.5)
        dx, dy = math.cos(theta), math.sin(theta)
        base = (int(centre[0] + dx * reach * 0.35), int(centre[1] + dy * reach * 0.35))
        tip = (int(centre[0] + dx * (reach + leaf_px)), int(centre[1] + dy * (reach + leaf_px)))
        mid = ((base[0] + tip[0]) // 2, (base[1] + tip[1]) // 2)
        axes = (int(leaf_px * 0.55), max(3, int(leaf_px * rng.uniform(0.22, 0.3))))
        yellow = rng.uniform() < spec.chlorotic_share
        # Leaves differ in lightness, not hue: the truth stays clear of the chlorosis limits.
        colour = (_YELLOW if yellow else _GREEN) * np.float32(rng.uniform(0.88, 1.08))
        leaf = np.zeros(plant.shape, np.uint8)
        cv2.ellipse(leaf, mid, axes, math.degrees(theta), 0, 360, 255, -1)
        cv2.line(image, centre, base, tuple(float(c) for c in _STEM), stem_w)
        cv2.line(plant, centre, base, 255, stem_w)
        cv2.line(chlorotic, centre, base, 0, stem_w)
        # Leaf texture: lightness that varies across the blade, a darker midrib.
        texture = cv2.GaussianBlur(
            rng.normal(1.0, 0.1, plant.shape).astype(np.float32), (0, 0), max(1.0, leaf_px / 12)
        )
        inside = leaf > 0
        image[inside] = np.clip(colour * texture[inside][:, None] * 1.6 - colour * 0.6, 0, 255)
        # The midrib runs along the blade, a stem-green petiole joins it to the stem.
        rib = np.zeros(plant.shape, np.uint8)
        cv2.line(rib, base, tip, 255, max(1, axes[1] // 7))
        image[(rib > 0) & inside] = np.clip(colour * 0.78, 0, 255)
        petiole = (rib > 0) & ~inside
        image[petiole] = _STEM
        plant[petiole] = 255
        chlorotic[petiole] = 0
        plant |= leaf
        chlorotic[leaf > 0] = 255 if yellow else 0


def _paste_leaves(
    spec: SceneSpec,
    rng: np.random.Generator,
    image: np.ndarray,
    plant: np.ndarray,
    chlorotic: np.ndarray,
    centre: tuple[int, int],
    leaf_px: float,
) -> None:
    phase = rng.uniform(0, 2 * math.pi)
    golden = math.pi * (3 - math.sqrt(5))
    for i in range(spec.leaves):
        cut = spec.leaf_photos[int(rng.integers(len(spec.leaf_photos)))]
        size = max(8, int(leaf_px * 1.6 * rng.uniform(0.85, 1.15)))
        patch = cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA)
        angle = rng.uniform(0, 360)
        rot = cv2.getRotationMatrix2D((size / 2, size / 2), angle, 1.0)
        patch = cv2.warpAffine(patch, rot, (size, size), flags=cv2.INTER_NEAREST)
        theta = phase + i * golden
        reach = leaf_px * rng.uniform(0.6, 1.3)
        x0 = int(centre[0] + math.cos(theta) * reach - size / 2)
        y0 = int(centre[1] + math.sin(theta) * reach - size / 2)
        _blit(image, plant, chlorotic, patch, x0, y0)


def _blit(
    image: np.ndarray, plant: np.ndarray, chlorotic: np.ndarray, patch: np.ndarray, x0: int, y0: int
) -> None:
    h, w = plant.shape
    ph, pw = patch.shape[:2]
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(w, x0 + pw), min(h, y0 + ph)
    if xa >= xb or ya >= yb:
        return
    sub = patch[ya - y0 : yb - y0, xa - x0 : xb - x0]
    alpha = sub[..., 3] > 127  # the cut-out's own mask; hard edges keep the truth exact
    region = image[ya:yb, xa:xb]
    region[alpha] = sub[..., :3][alpha]
    plant[ya:yb, xa:xb][alpha] = 255
    chlorotic[ya:yb, xa:xb][alpha] = np.where(chlorotic_pixels(sub[..., :3])[alpha], 255, 0)


def chlorotic_pixels(rgb: np.ndarray) -> np.ndarray:
    """Leaf pixels whose own colour in white light is chlorotic yellow (truth for photos)."""
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    return (hue >= 20) & (hue <= 34) & (sat >= 110) & (val >= 90)


def _background(kind: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    base = np.array(_BASE[kind], np.float32)
    coarse = cv2.resize(
        rng.normal(0, 1, (max(2, h // 48), max(2, w // 48), 1)).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_CUBIC,
    )[..., None]
    grain = rng.normal(0, 1, (h, w, 1)).astype(np.float32)
    if kind == "wood":
        # Planks with grain running along them.
        y = np.arange(h, dtype=np.float32)[:, None]
        x = np.arange(w, dtype=np.float32)[None, :]
        wobble = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 12) * 40
        grain_lines = np.sin((y + wobble + x * 0.02) * 0.35)[..., None]
        plank = ((y // (h / 5)) % 2 * 10 - 5)[..., None]
        out = base + grain_lines * 14 + plank + coarse * 8 + grain * 4
    elif kind == "mylar":
        crinkle = cv2.GaussianBlur(rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 6)
        out = base + (crinkle * 900.0).clip(-60, 55)[..., None] + grain * 3
    elif kind == "cardboard":
        x = np.arange(w, dtype=np.float32)[None, :]
        flutes = (np.sin(x * 0.5) * 3.0)[..., None]
        out = base + coarse * 10 + flutes + grain * 4
    elif kind == "white_wall":
        out = base + coarse * 5 + grain * 2
    else:
        out = base + coarse * 12 + grain * 5
    return np.clip(out, 0, 255).astype(np.uint8)


def _shade_map(spec: SceneSpec, rng: np.random.Generator) -> np.ndarray:
    h, w = spec.height, spec.width
    if spec.shade <= 0:
        return np.ones((h, w), np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (x / w - 0.5) * math.cos(angle) + (y / h - 0.5) * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(1e-6, float(ramp.max() - ramp.min()))
    return (1.0 - spec.shade * ramp).astype(np.float32)


def cut_out_leaf(rgb: np.ndarray) -> np.ndarray | None:
    """RGBA cut-out of the main leaf in a leaf photo, from its own green mask; None if none.

    The mask is the largest excess-green region with pinholes closed, eroded by
    two pixels so no background fringe comes along.
    """
    f = rgb.astype(np.float32)
    total = f.sum(axis=2) + 1.0
    exg = 3.0 * f[..., 1] / total - 1.0
    scaled = np.clip((exg + 1.0) * 85.0, 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(scaled, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    leaf = np.where(labels == biggest, 255, 0).astype(np.uint8)
    closed = cv2.morphologyEx(leaf, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    leaf = np.asarray(cv2.erode(closed, np.ones((5, 5), np.uint8)), np.uint8)
    if leaf.mean() < 255 * 0.15:
        return None
    return np.dstack([rgb, leaf])


SCENE_TYPES: dict[str, SceneSpec] = {
    "cardboard, white light": SceneSpec("cardboard", "white"),
    "cardboard, white light, chlorotic": SceneSpec("cardboard", "white", chlorotic_share=0.35),
    "wood, white light": SceneSpec("wood", "white"),
    "wood, HPS": SceneSpec("wood", "hps"),
    "wood, HPS, chlorotic": SceneSpec("wood", "hps", chlorotic_share=0.35),
    "mylar, white light": SceneSpec("mylar", "white"),
    "mylar, magenta LED": SceneSpec("mylar", "magenta"),
    "white wall, white light, chlorotic": SceneSpec("white_wall", "white", chlorotic_share=0.3),
    "white wall, blue LED": SceneSpec("white_wall", "blue"),
    "cardboard, HPS, shade": SceneSpec("cardboard", "hps", shade=0.7),
    "soil, deep shade, dense canopy": SceneSpec("soil", "white", shade=0.8, plant_scale=1.8),
    "white wall, red/blue LED": SceneSpec("white_wall", "red_blue"),
    "white wall, shade, dense canopy": SceneSpec(
        "white_wall", "white", shade=0.75, plant_scale=1.8, pots=False
    ),
}
"""Scene types the analysis is held to, by name (seeds vary per test)."""

REAL_LEAF_SCENES: dict[str, SceneSpec] = {
    "real leaves on cardboard, white light": SceneSpec("cardboard", "white", leaves=7),
    "real leaves on wood, HPS": SceneSpec("wood", "hps", leaves=7),
    "real leaves on mylar, magenta LED, shade": SceneSpec("mylar", "magenta", shade=0.6, leaves=7),
}
"""Scene types built from real leaf photos (the leaf_photos field is filled in by the caller)."""
