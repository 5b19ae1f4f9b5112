"""Evaluate shipped TFLite models through the device runtime (edge.inference)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import HealthConfig
from edge.inference import load_classifier
from edge.inference.preprocess import load_rgb
from edge.verdict import declined
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


def verdict_rule() -> dict[str, Any]:
    """The device's rule for when a verdict stands (edge.verdict.declined), as recorded."""
    config = HealthConfig()
    return {
        "min_confidence": config.min_confidence,
        "problem_min_confidence": config.problem_min_confidence,
        "rule": "a verdict stands when the image is in distribution (OOD score at or below "
        f"the threshold), its calibrated confidence is at least {config.min_confidence} and, "
        f"for a problem label, at least {config.problem_min_confidence}; otherwise unknown "
        "(health.min_confidence, health.problem_min_confidence)",
    }


def shipped_rule_report(
    model_dir: Path, data_dir: Path, samples: Sequence[Sample], labels: Sequence[str]
) -> dict[str, Any]:
    """int8 metrics with the device's verdict rule; a declined verdict counts as wrong."""
    config = HealthConfig()
    clf = load_classifier(model_dir, delegate="cpu", threads=2)
    pred = []
    for i in range(0, len(samples), 32):
        images = [load_rgb(str(data_dir / s.file)) for s in samples[i : i + 32]]
        for a in clf.assess_batch(images):
            stands = declined(a.label, a.confidence, a.in_distribution, config) is None
            pred.append(labels.index(a.label) if stands else len(labels))
    truth = [labels.index(s.label) for s in samples]
    rep = report(truth, pred, [*labels, "unknown"])
    rep["assessed_share"] = round(float(np.mean(np.array(pred) < len(labels))), 4)
    return rep


def record_rule(model_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Write the verdict rule and the val/test metrics under it into the manifest."""
    path = model_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    labels = manifest["labels"]
    samples = read_split(model_dir / "split.csv")
    manifest["verdict_rule"] = verdict_rule()
    for split in ("val", "test"):
        members = [s for s in samples if s.split == split]
        rep = shipped_rule_report(model_dir, data_dir, members, labels)
        manifest["metrics"][split]["int8_shipped_rule"] = rep
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: Sequence[str] | None = None) -> None:
    """Re-evaluate a model folder on a split and print the metrics as JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/leaf-health"))
    parser.add_argument("--model", type=Path, default=Path("models/plant_health"))
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument(
        "--record-rule",
        action="store_true",
        help="record the device's verdict rule and the metrics under it in the manifest",
    )
    args = parser.parse_args(argv)
    if args.record_rule:
        manifest = record_rule(args.model, args.data)
        print(json.dumps(manifest["metrics"]["test"]["int8_shipped_rule"], indent=1))
        return
    labels = json.loads((args.model / "manifest.json").read_text())["labels"]
    samples = [s for s in read_split(args.model / "split.csv") if s.split == args.split]
    print(json.dumps(evaluate_split(args.model, args.data, samples, labels), indent=1))


if __name__ == "__main__":
    main()
