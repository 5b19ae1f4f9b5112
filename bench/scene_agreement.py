"""Agreement of the canopy analysis with the exact truth, per grow-room scene type.

Renders every scene type of `edge.camera.growroom` (three seeds each, 960x720, JPEG
quality 90), decodes and measures it as the agent does, and prints per scene type
the worst cover error, the worst yellow_pct error (points) and the lowest mask IoU.
Real-leaf composites are added when the leaf-health dataset is found
(`CULTIVAI_LEAF_DATA`, default `../shared/datasets/leaf-health` beside the repository).
"""

from __future__ import annotations

import csv
import dataclasses
import os
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
from edge.vision import analyze, decode_for_analysis

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
    specs = dict(SCENE_TYPES)
    cuts = leaf_cut_outs(DATASET)
    for name, spec in REAL_LEAF_SCENES.items():
        if cuts:
            specs[name] = dataclasses.replace(spec, leaf_photos=cuts)
    return scene_rows(specs)


if __name__ == "__main__":
    from _common import print_table

    print_table(HEADERS, all_scene_rows())
