"""Canopy analysis against PlantCV on the same 3 MP photos: speed and agreement.

Ours runs as the agent runs it: the JPEG is decoded straight to analysis
resolution (libjpeg DCT scaling, 640 px long side) and measured there. PlantCV runs
the same steps on the full-size photo: read, white balance (`pcv.white_balance`, on
the grey card under a grow light) and a 3x3 median, excess-green index and threshold,
the shade map (local brightest channel, `pcv.dilate` / `pcv.gaussian_blur` at 1/16
size), pale leaves joined to leaf, yellow near green tissue in leaf-sized regions,
brown in small holes, opening and small-object clean-up, then `analyze.size` and
`analyze.color`. So that cover is compared on equal terms, PlantCV thresholds ExG at
the value ours chose for that photo, is told which lamp ours read, and uses our
colour ranges and our limits (as shares of the frame). Photos are rendered by the
synthetic camera and the grow-room scenes, which also give the exact plant mask.

Needs PlantCV, which is not a project dependency: `make bench` creates a venv with it.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _common import (
    Stopwatch,
    environment,
    median,
    ms,
    print_goal,
    print_table,
    render_photo,
    stage_medians,
)

from edge.camera.growroom import GREY_CARD, SCENE_TYPES, SceneSpec, render_scene
from edge.config import VisionConfig
from edge.vision import Analysis, analyze, canopy, decode_for_analysis

WIDTH, HEIGHT = 2048, 1536
MAX_SIDE = VisionConfig().analysis_max_side  # what the agent analyses at by default
SPEED_GOAL = 20.0  # PlantCV seconds per photo / ours
COVER_GOAL_PP = 1.0  # |cover ours - cover PlantCV|, percentage points, every photo


@dataclass(frozen=True, slots=True)
class Scene:
    """One synthetic photo: which plants, how old, and whether they are yellowing."""

    name: str
    seed: int
    day: float
    yellowing_onset_day: float | None = None
    brightness: float = 1.0
    room: SceneSpec | None = None  # a grow-room scene instead of the synthetic canopy

    @property
    def card(self) -> tuple[float, float, float, float] | None:
        """The grey card's position as fractions of the frame, when the scene has one."""
        return GREY_CARD if self.room is not None and self.room.grey_card else None

    def render(self) -> tuple[bytes, np.ndarray]:
        """The photo as JPEG bytes (quality 90) and its exact plant mask."""
        if self.room is None:
            return render_photo(
                WIDTH, HEIGHT, self.seed, self.day, self.yellowing_onset_day, self.brightness
            )
        spec = dataclasses.replace(self.room, width=WIDTH, height=HEIGHT, seed=self.seed)
        scene = render_scene(spec)
        bgr = cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR)
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok
        return buf.tobytes(), scene.plant


# Under a grow light both pipelines white-balance on the same grey card (its position
# in config for ours, the ROI of `pcv.white_balance` for PlantCV).
WOOD_HPS = dataclasses.replace(SCENE_TYPES["wood, HPS, chlorotic"], grey_card=True)
CARDBOARD_HPS_SHADE = dataclasses.replace(SCENE_TYPES["cardboard, HPS, shade"], grey_card=True)

SCENES = (
    Scene("seedlings d8", seed=1, day=8.0),
    Scene("young d12", seed=2, day=12.0),
    Scene("vegetative d18", seed=3, day=18.0),
    Scene("dense d26", seed=4, day=26.0),
    Scene("yellowing d22", seed=5, day=22.0, yellowing_onset_day=12.0),
    Scene("yellow dim d28", seed=6, day=28.0, yellowing_onset_day=14.0, brightness=0.75),
    Scene(
        "cardboard, chlorotic", seed=7, day=0, room=SCENE_TYPES["cardboard, white light, chlorotic"]
    ),
    Scene("wood, HPS, chlorotic", seed=8, day=0, room=WOOD_HPS),
    Scene("cardboard, HPS, shade", seed=9, day=0, room=CARDBOARD_HPS_SHADE),
)


@dataclass(frozen=True, slots=True)
class PlantcvResult:
    """What PlantCV measured on one photo."""

    mask: np.ndarray  # bool, full resolution
    cover_pct: float
    hue_mean_deg: float | None


@dataclass(frozen=True, slots=True)
class Given:
    """What PlantCV is told from ours' untimed first run: the ExG threshold and the lamp."""

    exg_threshold: float
    lamp: str
    card: tuple[float, float, float, float] | None


@dataclass(frozen=True, slots=True)
class CleanUp:
    """Our clean-up limits as shares of the frame, in full-size pixels for PlantCV."""

    min_area: int  # smaller plant specks are dropped
    max_hole: int  # enclosed holes up to this size may be brown lesions
    reach: int  # yellow must lie this close to green tissue (pixels)
    max_leaf: int  # a yellow region larger than this is not a leaf

    @classmethod
    def at(cls, width: int, height: int) -> CleanUp:
        """The limits ours uses (shares of the frame and its diagonal) for a photo this size."""
        min_area = max(4, width * height // 5000)
        return cls(
            min_area=min_area,
            max_hole=width * height // 100,
            reach=max(2, int(math.hypot(width, height) * canopy.NEAR_GREEN)),
            max_leaf=max(min_area, int(width * height * canopy.MAX_LEAF_REGION)),
        )


def run_ours(path: Path, scene: Scene, watch: Stopwatch) -> Analysis:
    """The agent's canopy measurement of a JPEG file."""
    rgb, full = decode_for_analysis(path.read_bytes(), MAX_SIDE)
    watch.lap("read + reduced decode")
    analysis = analyze(rgb, full, white_reference=scene.card)
    watch.lap("analyze")
    return analysis


def _components_touching(labels: np.ndarray, count: int, seed: np.ndarray) -> np.ndarray:
    """Labelled regions holding at least one seed pixel (PlantCV has no such call)."""
    hit = np.bincount(labels[seed], minlength=count + 1) > 0
    hit[0] = False
    return hit[labels]


def run_plantcv(
    pcv: Any, path: Path, given: Given, limits: CleanUp, watch: Stopwatch
) -> PlantcvResult:
    """PlantCV's equivalent of our canopy mask and metrics on the full-size photo."""
    from skimage.measure import label  # PlantCV's own labelling library

    pcv.outputs.clear()
    img, _, _ = pcv.readimage(str(path))  # BGR, like every PlantCV colour function expects
    watch.lap("read")
    # Ours divides out the cast of the lamp it read from the brightest pixels, and
    # leaves photo-light frames as they are; PlantCV's white balance (told whether a
    # grow light was read) scales each channel so the frame's brightest value is white.
    if given.card is not None:
        h, w = img.shape[:2]
        x, y, cw, ch = given.card
        roi = [int(x * w), int(y * h), int(cw * w), int(ch * h)]
        before = float(np.percentile(img[::4, ::4], 98))
        img = pcv.white_balance(img, mode="max", roi=roi)
        # PlantCV makes the card white; ours keeps the frame's brightest level where it
        # was, so that brightness limits mean the same (no PlantCV call: numpy).
        after = float(np.percentile(img[::4, ::4], 98)) + 1e-3
        img = np.clip(img.astype(np.float32) * (before / after), 0, 255).astype(np.uint8)
    elif given.lamp != "white":
        img = pcv.white_balance(img, mode="max")
    img = pcv.median_blur(img, (3, 3, 1))  # per channel, as ours does against JPEG noise
    watch.lap("white balance + median")
    exg = pcv.spectral_index.egi(img)
    watch.lap("ExG index")
    h, w = img.shape[:2]
    # Shade: the local light level (brightest channel, local maximum at leaf scale),
    # and the brightness each pixel would have in full light.
    level = np.max(img, axis=2)
    small = pcv.transform.resize_factor(level, (1 / 16, 1 / 16))
    small = pcv.gaussian_blur(pcv.dilate(small, 3, 1), (3, 3))
    light = pcv.transform.resize(small, (w, h)).astype(np.float32)
    gain = np.clip(canopy.SHADE_REFERENCE / np.maximum(light, 1.0), 1.0, 4.0)
    hue = pcv.rgb2gray_hsv(img, "h")
    sat = pcv.rgb2gray_hsv(img, "s")
    raw_val = pcv.rgb2gray_hsv(img, "v")
    val = np.clip(raw_val.astype(np.float32) * gain, 0, 255)
    watch.lap("shade")
    strong = exg.array_data > given.exg_threshold
    # Pale leaves: green-hued pixels just under the threshold, where they join leaf.
    weak = (
        (hue >= canopy.GREEN_HUE[0])
        & (hue <= canopy.GREEN_HUE[1])
        & (sat >= canopy.GREEN_MIN_SAT)
        & (exg.array_data > canopy.EXG_WEAK)
        & (raw_val >= 40)
    )
    labels, count = label(weak | strong, connectivity=2, return_num=True)
    green = pcv.fill(
        pcv.opening(_components_touching(labels, count, strong).astype(np.uint8) * 255),
        limits.min_area,
    )
    watch.lap("green + pale leaves")
    yellowish = (
        (hue >= canopy.YELLOW_HUE[0])
        & (hue <= canopy.YELLOW_HUE[1])
        & (sat >= canopy.YELLOW_MIN_SAT)
        & (val >= canopy.YELLOW_MIN_VAL)
        & (green == 0)
    )
    yellow = pcv.fill(pcv.opening(yellowish.astype(np.uint8) * 255), limits.min_area)
    # Chlorosis only near green tissue (about one leaf) and in leaf-sized regions.
    near = pcv.dilate(green, 2 * limits.reach + 1, 1) > 0
    labels, count = label(yellow > 0, connectivity=2, return_num=True)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    leaf_sized = (sizes <= limits.max_leaf)[labels] & (labels > 0)
    yellow = (leaf_sized & _components_touching(labels, count, near)).astype(np.uint8) * 255
    living = pcv.logical_or(green, yellow)
    watch.lap("yellow near leaf")
    # Brown counts only inside small enclosed holes (lesions), as in ours.
    holes = pcv.logical_xor(pcv.fill_holes(living), living)
    small_holes = pcv.logical_xor(holes, pcv.fill(holes, limits.max_hole))
    brownish, _ = pcv.threshold.custom_range(
        img,
        [canopy.BROWN_HUE[0], canopy.BROWN_MIN_SAT, canopy.BROWN_VAL[0]],
        [canopy.BROWN_HUE[1], 255, canopy.BROWN_VAL[1]],
        "HSV",
    )
    plant = pcv.logical_or(living, pcv.logical_and(brownish, small_holes))
    watch.lap("brown + clean-up")
    pcv.analyze.size(img, plant)
    watch.lap("analyze.size")
    pcv.analyze.color(img, plant, colorspaces="hsv")
    watch.lap("analyze.color")
    measured = next(iter(pcv.outputs.observations.values()))
    hue = float(measured["hue_circular_mean"]["value"])
    return PlantcvResult(
        mask=plant > 0,
        cover_pct=float(measured["area"]["value"]) * 100.0 / (img.shape[0] * img.shape[1]),
        hue_mean_deg=None if math.isnan(hue) else hue,
    )


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape."""
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 1.0


def shrink_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A full-size boolean mask at (width, height), by area majority."""
    small = cv2.resize(mask.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    return small >= 128


def hue_gap(a: float | None, b: float | None) -> float | None:
    """Smallest angle between two hues, in degrees."""
    if a is None or b is None:
        return None
    return abs((a - b + 180.0) % 360.0 - 180.0)


def fmt(value: float | None, digits: int = 2) -> str:
    """A number for the table; '-' when there is none."""
    return "-" if value is None else f"{value:.{digits}f}"


def import_plantcv() -> Any:
    """PlantCV with debug output off, or exit saying how to get it."""
    try:
        pcv = importlib.import_module("plantcv.plantcv")
    except ImportError:
        print(
            "PlantCV is not installed in this Python. `make bench` creates .venv-bench "
            "with it (pip install -e '.[edge]' plantcv).",
            file=sys.stderr,
        )
        raise SystemExit(2) from None
    pcv.params.debug = None  # no debug images written or plotted
    # scikit-image deprecates a function PlantCV's opening calls; the notice is noise here.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(plantcv|skimage)\b")
    return pcv


@dataclass
class Timings:
    """Stopwatches of every timed run, per pipeline, and the last result per photo."""

    ours: list[Stopwatch]
    plantcv: list[Stopwatch]
    analyses: list[Analysis]
    results: list[PlantcvResult]


def time_both(pcv: Any, paths: list[Path], repeats: int) -> Timings:
    """Run ours and PlantCV on every photo `repeats` times, alternating which goes first."""
    # One untimed run of each: ours fixes the threshold PlantCV is given, and both
    # pay their first-call costs (lazy imports, allocator growth) outside the timing.
    analyses = [run_ours(p, scene, Stopwatch()) for p, scene in zip(paths, SCENES, strict=True)]
    thresholds = [
        Given(a.canopy.exg_threshold, a.canopy.light, scene.card)
        for a, scene in zip(analyses, SCENES, strict=True)
    ]
    limits = CleanUp.at(WIDTH, HEIGHT)
    warm = run_plantcv(pcv, paths[0], thresholds[0], limits, Stopwatch())
    timings = Timings([], [], analyses, [warm] * len(paths))  # every entry is replaced below
    for rep in range(repeats):
        for i, path in enumerate(paths):
            order = ("ours", "plantcv") if (rep + i) % 2 == 0 else ("plantcv", "ours")
            for which in order:
                watch = Stopwatch()
                if which == "ours":
                    timings.analyses[i] = run_ours(path, SCENES[i], watch)
                    timings.ours.append(watch)
                else:
                    timings.results[i] = run_plantcv(pcv, path, thresholds[i], limits, watch)
                    timings.plantcv.append(watch)
    return timings


def report_agreement(timings: Timings, truths: list[np.ndarray]) -> tuple[float, float]:
    """Print the per-photo agreement table; the largest cover gaps, photo light and grow light."""
    rows = []
    cover_gaps, hue_gaps, truth_gaps, truth_ious = [], [], [], []
    for scene, analysis, result, truth in zip(
        SCENES, timings.analyses, timings.results, truths, strict=True
    ):
        c = analysis.canopy
        truth_cover = float(truth.mean() * 100.0)
        gap = hue_gap(c.hue_mean_deg, result.hue_mean_deg)
        ours_iou = iou(analysis.plant_mask, shrink_mask(truth, analysis.analysed_size))
        cover_gaps.append(abs(c.cover_pct - result.cover_pct))
        truth_gaps.append(abs(c.cover_pct - truth_cover))
        truth_ious.append(ours_iou)
        if gap is not None:
            hue_gaps.append(gap)
        rows.append(
            [
                scene.name,
                fmt(truth_cover),
                fmt(c.cover_pct),
                fmt(result.cover_pct),
                fmt(cover_gaps[-1]),
                fmt(truth_gaps[-1]),
                fmt(ours_iou, 3),
                fmt(iou(result.mask, truth), 3),
                fmt(c.hue_mean_deg, 1),
                fmt(result.hue_mean_deg, 1),
                fmt(gap),
                fmt(c.exg_threshold, 3),
            ]
        )
    print("agreement: cover in % of frame; hue = circular mean over the plant mask, degrees")
    headers = ["photo", "truth", "ours", "PlantCV", "|ours-PCV| pp", "|ours-truth| pp"]
    headers += ["IoU ours", "IoU PCV", "hue ours", "hue PCV", "hue gap", "ExG thr"]
    print_table(headers, rows)
    print(
        f"ours vs ground truth: cover gap max {max(truth_gaps):.2f} pp, mask IoU min "
        f"{min(truth_ious):.3f}; hue gap ours vs PlantCV max "
        f"{max(hue_gaps, default=float('nan')):.2f} deg"
    )
    lamps = [a.canopy.light for a in timings.analyses]
    white = [g for g, lamp in zip(cover_gaps, lamps, strict=True) if lamp == "white"]
    grow = [g for g, lamp in zip(cover_gaps, lamps, strict=True) if lamp != "white"]
    return max(white), max(grow, default=0.0)


def report_speed(timings: Timings) -> float:
    """Print the speed table; returns PlantCV's median time per photo over ours."""
    ours_s = median([w.total for w in timings.ours])
    pcv_s = median([w.total for w in timings.plantcv])
    pairs = [p.total / o.total for o, p in zip(timings.ours, timings.plantcv, strict=True)]
    rows = []
    for name, runs, total in (("ours", timings.ours, ours_s), ("PlantCV", timings.plantcv, pcv_s)):
        stages = ", ".join(f"{k} {ms(v)}" for k, v in stage_medians(runs).items())
        rows.append([name, ms(total), stages])
    print(f"speed: median of {len(timings.ours)} runs per pipeline, ms per photo")
    print_table(["pipeline", "ms/photo", "stages (median ms)"], rows, align="lrl")
    ratio = pcv_s / ours_s
    print(
        f"PlantCV / ours: {ratio:.1f}x (per photo pair: median {median(pairs):.1f}x, "
        f"min {min(pairs):.1f}x, max {max(pairs):.1f}x)"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    """Render the photos, time both pipelines alternately, print speed and agreement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=4, help="timed runs per photo (1-50)")
    repeats = max(1, min(parser.parse_args(argv).repeats, 50))
    pcv = import_plantcv()
    print(f"canopy analysis vs PlantCV {pcv.__version__}: {environment()}")
    print(
        f"{len(SCENES)} synthetic photos {WIDTH}x{HEIGHT} JPEG q90; ours at {MAX_SIDE} px, "
        f"PlantCV at full size; {repeats} alternating runs per photo"
    )
    with tempfile.TemporaryDirectory(prefix="canopy-bench-") as tmp:
        paths, truths = [], []
        for i, scene in enumerate(SCENES):
            data, truth = scene.render()
            paths.append(Path(tmp) / f"{i:02d}.jpg")
            paths[-1].write_bytes(data)
            truths.append(truth)
        timings = time_both(pcv, paths, repeats)
    print()
    cover_gap, grow_light_gap = report_agreement(timings, truths)
    print()
    ratio = report_speed(timings)
    print()
    print_goal(
        f"PlantCV time / ours >= {SPEED_GOAL:.0f}x (measured {ratio:.1f}x)", ratio >= SPEED_GOAL
    )
    print_goal(
        f"|cover ours - cover PlantCV| <= {COVER_GOAL_PP:.0f} pp on every photo-light photo "
        f"(max {cover_gap:.2f} pp)",
        cover_gap <= COVER_GOAL_PP,
    )
    print(
        f"under a grow light (white balance on a grey card, which PlantCV clips at the "
        f"card's maximum): cover gap max {grow_light_gap:.2f} pp"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
