"""Stand-in protocols on the synthetic camera: python -m models.stand_ins [--model DIR].

No grow-room photos are available, so the shipped model is checked on what the device's
own synthetic camera renders: during the canopy's healthy phase (before its yellowing
starts) no assessed problem verdict should reach the alert confidence, and frames with no
plant or no light should be unknown. Whole frames and the 160-px tiles of the 640x480
analysis image that hold plant are both judged. Results go into the manifest under
evaluation.synthetic_camera.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.inference import Assessment, PlantHealthClassifier, load_classifier

ALERT_CONFIDENCE = 0.7  # the agent's default alerts.problem_confidence
TILE = 160
MIN_PLANT = 0.25  # share of a tile that must be plant for it to be judged
ANALYSIS_SIZE = (640, 480)


def _problem(a: Assessment) -> bool:
    return a.in_distribution and a.label != "healthy" and a.confidence >= ALERT_CONFIDENCE


def _judge(clf: PlantHealthClassifier, settings: SyntheticCameraSettings, day: float) -> Any:
    image, mask = SyntheticCamera(settings, clock=None).render(day)  # type: ignore[arg-type]
    whole = clf.assess(image)
    small = cv2.resize(image, ANALYSIS_SIZE, interpolation=cv2.INTER_AREA)
    cover = cv2.resize(mask.astype(np.float32), ANALYSIS_SIZE, interpolation=cv2.INTER_AREA)
    w, h = ANALYSIS_SIZE
    cells = [(y, x) for y in range(0, h - TILE + 1, TILE) for x in range(0, w - TILE + 1, TILE)]
    planted = [
        c for c in cells if cover[c[0] : c[0] + TILE, c[1] : c[1] + TILE].mean() >= MIN_PLANT
    ]
    tiles = [small[y : y + TILE, x : x + TILE] for y, x in (planted or cells)]
    return whole, clf.assess_batch(tiles), bool(planted)


def evaluate(clf: PlantHealthClassifier, seeds: int = 8) -> dict[str, Any]:
    """Healthy-phase false alarms and unknown shares on no-plant and dark frames."""
    onset = 20.0
    days = np.arange(6.0, onset, 1.5)
    frames, tiles = [], []
    for seed in range(seeds):
        settings = SyntheticCameraSettings(seed=seed, yellowing_onset_day=onset)
        for day in days:
            whole, parts, planted = _judge(clf, settings, float(day))
            frames.append(whole)
            if planted:
                tiles.append(parts)
    flat = [t for parts in tiles for t in parts]
    empty = [_judge(clf, SyntheticCameraSettings(seed=s, plants=0), 6.0) for s in range(seeds)]
    dark = [
        _judge(clf, SyntheticCameraSettings(seed=s, brightness=0.05), 14.0) for s in range(seeds)
    ]

    def share(items: Sequence[Assessment], test: Any) -> float:
        return round(float(np.mean([test(a) for a in items])), 4) if items else 0.0

    return {
        "alert_confidence": ALERT_CONFIDENCE,
        "healthy_phase": {
            "frames": len(frames),
            "days": [float(days[0]), float(days[-1])],
            "yellowing_onset_day": onset,
            "whole_frame_problem_share": share(frames, _problem),
            "whole_frame_unknown_share": share(frames, lambda a: not a.in_distribution),
            "tiles": len(flat),
            "tile_problem_share": share(flat, _problem),
            "tile_unknown_share": share(flat, lambda a: not a.in_distribution),
            "frames_with_a_problem_tile_share": round(
                float(np.mean([any(_problem(t) for t in parts) for parts in tiles])), 4
            ),
        },
        "no_plant": {
            "frames": len(empty),
            "whole_frame_unknown_share": share(
                [e[0] for e in empty], lambda a: not a.in_distribution
            ),
            "tile_unknown_share": share(
                [t for e in empty for t in e[1]], lambda a: not a.in_distribution
            ),
        },
        "lights_at_5_percent": {
            "frames": len(dark),
            "whole_frame_unknown_share": share(
                [d[0] for d in dark], lambda a: not a.in_distribution
            ),
            "tile_unknown_share": share(
                [t for d in dark for t in d[1]], lambda a: not a.in_distribution
            ),
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Measure the shipped model on the synthetic camera and record it in the manifest."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/plant_health"))
    args = parser.parse_args(argv)
    result = evaluate(load_classifier(args.model, delegate="cpu", threads=2))
    path = args.model / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.setdefault("evaluation", {})["synthetic_camera"] = result
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
