"""Agreement of the canopy analysis with the exact truth, per grow-room scene type.

Renders every scene type of `edge.camera.growroom` (three seeds each, 960x720, JPEG
quality 90), decodes and measures it as the agent does, and prints per scene type
the worst cover error, the worst yellow_pct error (points) and the lowest mask IoU.
Real-leaf composites are added when the leaf-health dataset is found
(`CULTIVAI_LEAF_DATA`, default `../shared/datasets/leaf-health` beside the repository).

`--rules` measures instead what each grow-room rule buys: every scene measured with
all rules, with each one turned off, and with none, on the same JPEG-decoded frames.
The sticky-trap scene is measured against its empty-scene capture, the one scene that
needs the background model.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from edge.camera.growroom import (
    REAL_LEAF_SCENES,
    SCENE_TYPES,
    SceneSpec,
    cut_out_leaf,
    render_scene,
)
from edge.vision import BackgroundModel, Rules, analyze, decode_for_analysis
from edge.vision.canopy import balanced_frame

SEEDS = (0, 1, 2)
DATASET = Path(
    os.environ.get(
        "CULTIVAI_LEAF_DATA", Path(__file__).resolve().parents[2] / "shared/datasets/leaf-health"
    )
)


def leaf_cut_outs(dataset: Path, limit: int = 24) -> tuple[np.ndarray, ...]:
    """RGBA cut-outs of healthy leaf photos; empty when the dataset is absent."""
    manifest = dataset / "manifest.csv"
    if not manifest.is_file():
        return ()
    with open(manifest, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["class"] == "healthy"]
    cuts = []
    for row in rows[:: max(1, len(rows) // limit)][:limit]:
        bgr = cv2.imread(str(dataset / row["file"]))
        if (
            bgr is not None
            and (cut := cut_out_leaf(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))) is not None
        ):
            cuts.append(cut)
    return tuple(cuts)


def scene_rows(specs: dict[str, SceneSpec]) -> list[list[str]]:
    """One row per scene type: truth ranges and the worst errors over the seeds."""
    rows = []
    for name, spec in specs.items():
        cover_err, yellow_err, ious, covers, yellows, light = [], [], [], [], [], ""
        for seed in SEEDS:
            scene = render_scene(dataclasses.replace(spec, seed=seed))
            ok, buf = cv2.imencode(
                ".jpg", cv2.cvtColor(scene.rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
            )
            assert ok
            rgb, full = decode_for_analysis(buf.tobytes(), 640)
            a = analyze(rgb, full)
            truth = (
                cv2.resize(
                    scene.plant.astype(np.uint8) * 255,
                    a.analysed_size,
                    interpolation=cv2.INTER_AREA,
                )
                >= 128
            )
            ious.append(float((a.plant_mask & truth).sum() / max(1, (a.plant_mask | truth).sum())))
            cover_err.append(abs(a.canopy.cover_pct - scene.cover_pct))
            covers.append(scene.cover_pct)
            yellows.append(scene.yellow_pct)
            light = a.canopy.light
            if a.canopy.yellow_pct is not None:
                yellow_err.append(abs(a.canopy.yellow_pct - scene.yellow_pct))
        rows.append(
            [
                name,
                light,
                f"{min(covers):.0f}-{max(covers):.0f}",
                f"{min(yellows):.0f}-{max(yellows):.0f}",
                f"{max(cover_err):.2f}",
                f"{max(yellow_err):.2f}" if yellow_err else "null (not measured)",
                f"{min(ious):.3f}",
            ]
        )
    return rows


HEADERS = ["scene type", "light read", "cover truth %", "yellow truth %"]
HEADERS += ["cover err pp", "yellow err pp", "mask IoU"]


def all_scene_rows() -> list[list[str]]:
    """Rows for the synthetic scene types, then the real-leaf composites if available."""
    return scene_rows(all_specs())


def as_decoded(rgb: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """A rendered frame as the agent sees it: JPEG quality 90, decoded at 640 px."""
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok
    return decode_for_analysis(buf.tobytes(), 640)


TRAP = SceneSpec("white_wall", "white", sticky_trap=True, seed=3)
RULE_NAMES = tuple(f.name for f in dataclasses.fields(Rules))
VARIANTS: dict[str, Rules] = {
    "all rules": Rules(),
    **{f"without {name}": Rules(**{name: False}) for name in RULE_NAMES},
    "none of them": Rules(**dict.fromkeys(RULE_NAMES, False)),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Case:
    """One decoded frame to measure, its truth, and the empty scene it may have."""

    rgb: np.ndarray
    full: tuple[int, int]
    truth: np.ndarray  # plant mask at analysis size
    cover_pct: float
    yellow_pct: float
    healthy: bool
    empty: np.ndarray | None  # the empty scene, decoded and white-balanced


def cases(specs: dict[str, SceneSpec]) -> Iterator[Case]:
    """Every scene type at every seed, plus the sticky trap with its empty scene."""
    for spec in specs.values():
        for seed in SEEDS:
            yield _case(dataclasses.replace(spec, seed=seed), None)
    for frame in SEEDS:
        empty, _ = as_decoded(render_scene(dataclasses.replace(TRAP, empty=True, frame=9)).rgb)
        yield _case(dataclasses.replace(TRAP, frame=frame), balanced_frame(empty)[0])


def _case(spec: SceneSpec, empty: np.ndarray | None) -> Case:
    scene = render_scene(spec)
    rgb, full = as_decoded(scene.rgb)
    size = (rgb.shape[1], rgb.shape[0])
    truth = cv2.resize(scene.plant.astype(np.uint8) * 255, size, interpolation=cv2.INTER_AREA)
    healthy = spec.chlorotic_share == 0
    return Case(rgb, full, truth >= 128, scene.cover_pct, scene.yellow_pct, healthy, empty)


def rule_rows(specs: dict[str, SceneSpec]) -> list[list[str]]:
    """One row per variant: worst errors over every case, and how many fail the test limits."""
    measured = list(cases(specs))
    rows = []
    for name, rules in VARIANTS.items():
        cover, yellow, healthy, ious, failing = [0.0], [0.0], [0.0], [1.0], 0
        for case in measured:
            background = None
            if case.empty is not None:
                background = BackgroundModel()
                background.capture_empty(case.empty)
            a = analyze(case.rgb, case.full, background=background, rules=rules)
            c = a.canopy
            union = max(1, int((a.plant_mask | case.truth).sum()))
            ious.append(float((a.plant_mask & case.truth).sum() / union))
            cover.append(abs(c.cover_pct - case.cover_pct))
            fails = cover[-1] > 3.0
            if c.yellow_pct is not None:
                yellow.append(abs(c.yellow_pct - case.yellow_pct))
                fails |= yellow[-1] > 2.0
                if case.healthy:
                    healthy.append(c.yellow_pct)
                    fails |= c.yellow_pct >= 2.0
            failing += fails
        rows.append(
            [
                name,
                f"{max(cover):.2f}",
                f"{max(yellow):.2f}",
                f"{max(healthy):.2f}",
                f"{min(ious):.3f}",
                f"{failing}/{len(measured)}",
            ]
        )
    return rows


RULE_HEADERS = ["variant", "worst cover err pp", "worst yellow err pp"]
RULE_HEADERS += ["worst yellow healthy %", "lowest IoU", "scenes failing"]


def all_specs() -> dict[str, SceneSpec]:
    """The synthetic scene types, then the real-leaf composites if the dataset is there."""
    specs = dict(SCENE_TYPES)
    cuts = leaf_cut_outs(DATASET)
    for name, spec in REAL_LEAF_SCENES.items():
        if cuts:
            specs[name] = dataclasses.replace(spec, leaf_photos=cuts)
    return specs


if __name__ == "__main__":
    from _common import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rules", action="store_true", help="measure what each rule buys")
    if parser.parse_args().rules:
        print_table(RULE_HEADERS, rule_rows(all_specs()))
    else:
        print_table(HEADERS, scene_rows(all_specs()))
