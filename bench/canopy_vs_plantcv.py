"""Canopy analysis against PlantCV on the same 3 MP photos: speed and agreement.

Ours runs as the agent runs it: the JPEG is decoded straight to analysis
resolution (libjpeg DCT scaling, 640 px long side) and measured there. PlantCV runs
its own steps on the full-size photo: read, excess-green index, binary threshold,
yellow and brown colour ranges, opening, small-object and hole clean-up, then
`analyze.size` and `analyze.color`. So that cover is compared on equal terms,
PlantCV thresholds ExG at the value ours chose for that photo, and uses our colour
ranges and our clean-up limits (as shares of the frame). Photos are rendered by the
synthetic camera, which also gives the exact plant mask.

Needs PlantCV, which is not a project dependency: `make bench` creates a venv with it.
"""

from __future__ import annotations

import argparse
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


SCENES = (
    Scene("seedlings d8", seed=1, day=8.0),
    Scene("young d12", seed=2, day=12.0),
    Scene("vegetative d18", seed=3, day=18.0),
    Scene("dense d26", seed=4, day=26.0),
    Scene("yellowing d22", seed=5, day=22.0, yellowing_onset_day=12.0),
    Scene("yellow dim d28", seed=6, day=28.0, yellowing_onset_day=14.0, brightness=0.75),
)


@dataclass(frozen=True, slots=True)
class PlantcvResult:
    """What PlantCV measured on one photo."""

    mask: np.ndarray  # bool, full resolution
    cover_pct: float
    hue_mean_deg: float | None


@dataclass(frozen=True, slots=True)
class CleanUp:
    """Our clean-up limits as shares of the frame, in full-size pixels for PlantCV."""

    min_area: int  # smaller plant specks are dropped
    max_hole: int  # enclosed holes up to this size may be brown lesions

    @classmethod
    def at(cls, width: int, height: int) -> CleanUp:
        """The limits ours uses (1/5000 and 1/100 of the frame) for a photo this size."""
        return cls(min_area=max(4, width * height // 5000), max_hole=width * height // 100)


def run_ours(path: Path, watch: Stopwatch) -> Analysis:
    """The agent's canopy measurement of a JPEG file."""
    rgb, full = decode_for_analysis(path.read_bytes(), MAX_SIDE)
    watch.lap("read + reduced decode")
    analysis = analyze(rgb, full)
    watch.lap("analyze")
    return analysis


def run_plantcv(
    pcv: Any, path: Path, exg_threshold: float, limits: CleanUp, watch: Stopwatch
) -> PlantcvResult:
    """PlantCV's equivalent of our canopy mask and metrics on the full-size photo."""
    pcv.outputs.clear()
    img, _, _ = pcv.readimage(str(path))  # BGR, like every PlantCV colour function expects
    watch.lap("read")
    exg = pcv.spectral_index.egi(img)
    watch.lap("ExG index")
    green = pcv.threshold.binary(exg.array_data, exg_threshold, "light")
    yellow, _ = pcv.threshold.custom_range(
        img,
        [canopy.YELLOW_HUE[0], canopy.YELLOW_MIN_SAT, canopy.YELLOW_MIN_VAL],
        [canopy.YELLOW_HUE[1], 255, 255],
        "HSV",
    )
    # PlantCV's default opening footprint is the 3x3 cross ours opens with.
    living = pcv.fill(pcv.opening(pcv.logical_or(green, yellow)), limits.min_area)
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
    watch.lap("threshold + clean-up")
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
    analyses = [run_ours(p, Stopwatch()) for p in paths]
    thresholds = [a.canopy.exg_threshold for a in analyses]
    limits = CleanUp.at(WIDTH, HEIGHT)
    warm = run_plantcv(pcv, paths[0], thresholds[0], limits, Stopwatch())
    timings = Timings([], [], analyses, [warm] * len(paths))  # every entry is replaced below
    for rep in range(repeats):
        for i, path in enumerate(paths):
            order = ("ours", "plantcv") if (rep + i) % 2 == 0 else ("plantcv", "ours")
            for which in order:
                watch = Stopwatch()
                if which == "ours":
                    timings.analyses[i] = run_ours(path, watch)
                    timings.ours.append(watch)
                else:
                    timings.results[i] = run_plantcv(pcv, path, thresholds[i], limits, watch)
                    timings.plantcv.append(watch)
    return timings


def report_agreement(timings: Timings, truths: list[np.ndarray]) -> float:
    """Print the per-photo agreement table; returns the largest cover gap (points)."""
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
    return max(cover_gaps)


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
            data, truth = render_photo(
                WIDTH, HEIGHT, scene.seed, scene.day, scene.yellowing_onset_day, scene.brightness
            )
            paths.append(Path(tmp) / f"{i:02d}.jpg")
            paths[-1].write_bytes(data)
            truths.append(truth)
        timings = time_both(pcv, paths, repeats)
    print()
    cover_gap = report_agreement(timings, truths)
    print()
    ratio = report_speed(timings)
    print()
    print_goal(
        f"PlantCV time / ours >= {SPEED_GOAL:.0f}x (measured {ratio:.1f}x)", ratio >= SPEED_GOAL
    )
    print_goal(
        f"|cover ours - cover PlantCV| <= {COVER_GOAL_PP:.0f} pp on every photo "
        f"(max {cover_gap:.2f} pp)",
        cover_gap <= COVER_GOAL_PP,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
