"""Evaluate shipped TFLite models through the device runtime (edge.inference)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.inference import load_classifier
from edge.inference.preprocess import load_rgb
from models.data import Sample, read_split
from models.metrics import report

CHILLI_ONLY = ("pest_damage", "nutrient_deficiency")


def predict(model_dir: Path, data_dir: Path, samples: Sequence[Sample], variant: str) -> np.ndarray:
    """Probabilities (N, classes) for ``samples`` from one model variant, run on the CPU."""
    clf = load_classifier(model_dir, delegate="cpu", threads=2, variant=variant)
    return np.stack([clf.scores_array(load_rgb(str(data_dir / s.file))) for s in samples])


def per_crop(
    samples: Sequence[Sample], pred: Sequence[int], labels: Sequence[str]
) -> dict[str, Any]:
    """Per-crop accuracy/macro-F1, and how the chilli-only classes fare on each crop."""
    out: dict[str, Any] = {}
    for crop in sorted({s.crop for s in samples}):
        idx = [i for i, s in enumerate(samples) if s.crop == crop]
        truth = [labels.index(samples[i].label) for i in idx]
        rep = report(truth, [pred[i] for i in idx], labels)
        present = [lab for lab in labels if rep["per_class"][lab]["support"]]
        out[crop] = {
            "images": len(idx),
            "accuracy": rep["accuracy"],
            "macro_f1_over_present_classes": rep["macro_f1"],
            "per_class": {lab: rep["per_class"][lab] for lab in present},
            "predicted_as_chilli_only_classes": {
                lab: sum(1 for i in idx if labels[pred[i]] == lab) for lab in CHILLI_ONLY
            },
        }
    return out


def evaluate_split(
    model_dir: Path, data_dir: Path, samples: Sequence[Sample], labels: Sequence[str]
) -> dict[str, Any]:
    """int8 and float metrics, per-crop results and int8/float top-1 agreement."""
    truth = [labels.index(s.label) for s in samples]
    preds = {v: predict(model_dir, data_dir, samples, v).argmax(axis=1) for v in ("int8", "float")}
    return {
        "images": len(samples),
        "int8": report(truth, preds["int8"].tolist(), labels),
        "float": report(truth, preds["float"].tolist(), labels),
        "per_crop_int8": per_crop(samples, preds["int8"].tolist(), labels),
        "int8_float_top1_agreement": round(float(np.mean(preds["int8"] == preds["float"])), 4),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Re-evaluate a model folder on a split and print the metrics as JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/leaf-health"))
    parser.add_argument("--model", type=Path, default=Path("models/plant_health"))
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    args = parser.parse_args(argv)
    labels = json.loads((args.model / "manifest.json").read_text())["labels"]
    samples = [s for s in read_split(args.model / "split.csv") if s.split == args.split]
    print(json.dumps(evaluate_split(args.model, args.data, samples, labels), indent=1))


if __name__ == "__main__":
    main()
