"""Leave-one-crop-out false alarms: train on two crops, show the third crop's healthy leaves.

python -m models.loco --data DIR [--epochs 16] [--work DIR] [--record models/plant_health]

A grower's crop is usually not in the training set. For each crop, a model is trained on
the other two (same recipe as models.train, optionally a shorter schedule), calibrated and
given its OOD threshold exactly as the shipped model (models.calibrate), and then judges
every healthy leaf of the held-out crop. A false alarm is a verdict other than "healthy"
that stands under the device's rule (edge.verdict.declined: in distribution, and a problem
label at health.problem_min_confidence or more). Results go into the shipped manifest under
evaluation.leave_one_crop_out.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge.config import HealthConfig
from edge.inference import load_classifier
from edge.inference.preprocess import load_rgb
from edge.verdict import declined
from models.calibrate import auroc, calibrate
from models.card import build_manifest, write_model_files
from models.data import LABELS, Sample, read_split, write_split
from models.export import to_float_tflite, to_int8_tflite
from models.metrics import report
from models.train import SOURCE_SIZE, calibration_set, load_images, train
from models.train import parse_args as train_args

log = logging.getLogger("models.loco")
ALERT_CONFIDENCE = 0.7


def hold_out(
    args: argparse.Namespace, samples: Sequence[Sample], crop: str, folder: Path
) -> dict[str, Any]:
    """Train without ``crop``, calibrate, and judge the held-out crop's leaves."""
    kept = [s for s in samples if s.crop != crop]
    by_split = {sp: [s for s in kept if s.split == sp] for sp in ("train", "val", "test")}
    folder.mkdir(parents=True, exist_ok=True)
    write_split(kept, folder / "split.csv")
    if args.reuse and (folder / "manifest.json").is_file():
        # Re-calibrate and re-judge a model trained earlier (e.g. after a change of OOD method).
        best = json.loads((folder / "manifest.json").read_text())["training"]
        best = {"epoch": best["selected_epoch"]}
    else:
        targs = train_args(["--epochs", str(args.epochs), "--seed", str(args.seed)])
        x_train = load_images(args.data, by_split["train"], SOURCE_SIZE)
        y_train = np.array([LABELS.index(s.label) for s in by_split["train"]])
        x_val = load_images(args.data, by_split["val"], targs.size)
        y_val = np.array([LABELS.index(s.label) for s in by_split["val"]])
        model, best = train(targs, x_train, y_train, x_val, y_val)
        calib = calibration_set(x_train, targs.seed, targs.size)
        int8 = to_int8_tflite(model, targs.size, calib)
        write_model_files(folder, LABELS, to_float_tflite(model, targs.size), int8)
        data = {"fingerprint": "", "images": len(kept), "split_counts": {}}
        settings = {"epochs": args.epochs, "selected_epoch": best["epoch"]}
        manifest = build_manifest(folder, "loco", LABELS, targs.size, settings, data)
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    manifest = calibrate(args.data, folder)

    clf = load_classifier(folder, delegate="cpu", threads=2)

    def judge(members: Sequence[Sample]) -> list[Any]:
        out = []
        for i in range(0, len(members), 32):
            chunk = members[i : i + 32]
            out.extend(clf.assess_batch([load_rgb(str(args.data / s.file)) for s in chunk]))
        return out

    test = judge(by_split["test"])
    truth = [LABELS.index(s.label) for s in by_split["test"]]
    in_domain = report(truth, [LABELS.index(a.label) for a in test], LABELS)
    held = [s for s in samples if s.crop == crop]
    healthy = [s for s in held if s.label == "healthy"]
    verdicts = judge(healthy)
    config = HealthConfig()
    problems = [a for a in verdicts if a.in_distribution and a.label != "healthy"]
    confident = [a for a in problems if a.confidence >= ALERT_CONFIDENCE]
    alarms = [
        a
        for a in verdicts
        if a.label != "healthy"
        and declined(a.label, a.confidence, a.in_distribution, config) is None
    ]
    sick = judge([s for s in held if s.label != "healthy"])
    result = {
        "trained_on": sorted({s.crop for s in kept}),
        "epochs": args.epochs,
        "selected_epoch": best["epoch"],
        "in_domain_test_macro_f1_int8": in_domain["macro_f1"],
        "in_domain_test_assessed_share": round(
            float(np.mean([a.in_distribution for a in test])), 4
        ),
        "held_out_healthy_leaves": len(healthy),
        "false_alarm_rate": round(len(alarms) / len(healthy), 4),
        "false_alarm_rate_any_problem_label": round(len(problems) / len(healthy), 4),
        "false_alarm_rate_at_confidence_0_7": round(len(confident) / len(healthy), 4),
        "unknown_share": round(float(np.mean([not a.in_distribution for a in verdicts])), 4),
        "healthy_share": round(
            float(np.mean([a.in_distribution and a.label == "healthy" for a in verdicts])), 4
        ),
        "false_alarm_rate_without_ood": round(
            float(np.mean([a.label != "healthy" for a in verdicts])), 4
        ),
        "ood_method": manifest["ood"].get("candidate", manifest["ood"]["method"]),
        "ood_auroc_test_vs_held_out_healthy": round(
            auroc(np.array([a.ood_score for a in test]), np.array([a.ood_score for a in verdicts])),
            4,
        ),
        "held_out_diseased_leaves": len(sick),
        "held_out_diseased_flagged_share": round(
            float(np.mean([a.in_distribution and a.label != "healthy" for a in sick])), 4
        ),
        "temperature": manifest["calibration"]["temperature"],
    }
    log.info("held out %s: %s", crop, result)
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Run leave-one-crop-out for every crop and record the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/leaf-health"))
    parser.add_argument("--record", type=Path, default=Path("models/plant_health"))
    parser.add_argument("--work", type=Path, default=None, help="keep the models here")
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--crops", nargs="*", default=None)
    parser.add_argument(
        "--reuse", action="store_true", help="re-calibrate models already in --work, no training"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    samples = read_split(args.record / "split.csv")
    crops = args.crops or sorted({s.crop for s in samples})
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        results = {crop: hold_out(args, samples, crop, work / crop) for crop in crops}
    manifest_path = args.record / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    loco = manifest.setdefault("evaluation", {}).setdefault("leave_one_crop_out", {})
    loco["protocol"] = (
        "train on two crops (shipped recipe, shorter schedule), calibrate and fit the OOD "
        "threshold as for the shipped model, then judge every healthy leaf of the third crop; "
        "false alarm = a verdict other than healthy that stands under the device's rule "
        "(in distribution, a problem label at health.problem_min_confidence or more)"
    )
    loco.setdefault("per_held_out_crop", {}).update(results)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
