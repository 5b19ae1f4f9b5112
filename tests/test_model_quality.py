"""The shipped model reaches its recorded scores on the recorded test split."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import numpy as np
import pytest

from edge.inference import load_classifier
from edge.inference.preprocess import load_rgb

pytest.importorskip("ai_edge_litert", reason="LiteRT (ai-edge-litert) is not installed")
pytestmark = pytest.mark.slow

MODEL_DIR = Path(__file__).resolve().parent.parent / "models" / "plant_health"
TOLERANCE = 0.01


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads((MODEL_DIR / "manifest.json").read_text())


@pytest.fixture(scope="module")
def test_rows() -> list[dict[str, str]]:
    with (MODEL_DIR / "split.csv").open(newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["split"] == "test"]
    assert rows, "split.csv has no test rows"
    return rows


@functools.cache
def _predict(dataset: Path) -> dict[str, np.ndarray]:
    with (MODEL_DIR / "split.csv").open(newline="") as fh:
        files = [r["file"] for r in csv.DictReader(fh) if r["split"] == "test"]
    images = [load_rgb(str(dataset / f)) for f in files]
    out = {}
    for variant in ("int8", "float"):
        clf = load_classifier(MODEL_DIR, delegate="cpu", threads=2, variant=variant)
        out[variant] = np.array([int(np.argmax(clf.scores_array(img))) for img in images])
    return out


@pytest.fixture
def predictions(leaf_dataset: Path) -> dict[str, np.ndarray]:
    """Top-1 class indices of the int8 and float models on the test split (computed once)."""
    return _predict(leaf_dataset)


def _scores(truth: np.ndarray, pred: np.ndarray, n: int) -> tuple[dict[int, tuple], float, float]:
    per_class = {}
    for c in range(n):
        tp = int(np.sum((pred == c) & (truth == c)))
        predicted, support = int(np.sum(pred == c)), int(np.sum(truth == c))
        p = tp / predicted if predicted else 0.0
        r = tp / support if support else 0.0
        per_class[c] = (p, r, 2 * p * r / (p + r) if p + r else 0.0, support)
    macro = float(np.mean([v[2] for v in per_class.values() if v[3]]))
    return per_class, macro, float(np.mean(truth == pred))


def test_split_is_grouped(leaf_dataset: Path) -> None:
    with (MODEL_DIR / "split.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    splits_of_group: dict[str, set[str]] = {}
    for r in rows:
        splits_of_group.setdefault(r["photo_group"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits_of_group.values()), "a photo group straddles splits"
    assert all((leaf_dataset / r["file"]).is_file() for r in rows)


@pytest.mark.parametrize("variant", ["int8", "float"])
def test_recorded_scores_are_reached(
    variant: str,
    manifest: dict,
    test_rows: list[dict[str, str]],
    predictions: dict[str, np.ndarray],
) -> None:
    labels = manifest["labels"]
    recorded = manifest["metrics"]["test"][variant]
    truth = np.array([labels.index(r["class"]) for r in test_rows])
    per_class, macro, accuracy = _scores(truth, predictions[variant], len(labels))
    assert recorded["images"] == len(test_rows)
    for c, label in enumerate(labels):
        p, r, f1, support = per_class[c]
        want = recorded["per_class"][label]
        assert want["support"] == support, label
        for name, got in (("precision", p), ("recall", r), ("f1", f1)):
            assert got == pytest.approx(want[name], abs=TOLERANCE), f"{variant} {label} {name}"
    assert macro == pytest.approx(recorded["macro_f1"], abs=TOLERANCE)
    assert macro >= recorded["macro_f1"] - TOLERANCE
    assert accuracy == pytest.approx(recorded["accuracy"], abs=TOLERANCE)


def test_int8_agrees_with_float(manifest: dict, predictions: dict[str, np.ndarray]) -> None:
    agreement = float(np.mean(predictions["int8"] == predictions["float"]))
    assert agreement >= 0.95
    recorded = manifest["metrics"]["test"]["int8_float_top1_agreement"]
    assert agreement == pytest.approx(recorded, abs=TOLERANCE)


@functools.cache
def _assess_test(dataset: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrated probabilities, OOD scores and in-distribution flags on the test split."""
    with (MODEL_DIR / "split.csv").open(newline="") as fh:
        files = [r["file"] for r in csv.DictReader(fh) if r["split"] == "test"]
    clf = load_classifier(MODEL_DIR, delegate="cpu", threads=2)
    results = []
    for start in range(0, len(files), 32):
        images = [load_rgb(str(dataset / f)) for f in files[start : start + 32]]
        results.extend(clf.assess_batch(images))
    probs = np.array([[a.scores[lab] for lab in clf.labels] for a in results])
    return (
        probs,
        np.array([a.ood_score for a in results]),
        np.array([a.in_distribution for a in results]),
    )


def test_calibration_lowers_the_recorded_test_ece(
    leaf_dataset: Path, manifest: dict, test_rows: list[dict[str, str]]
) -> None:
    from models.calibrate import ece

    labels = manifest["labels"]
    truth = np.array([labels.index(r["class"]) for r in test_rows])
    probs, _, _ = _assess_test(leaf_dataset)
    recorded = manifest["calibration"]["ece_test"]
    got = ece(probs, truth, manifest["calibration"]["ece_bins"])
    assert got == pytest.approx(recorded["after"], abs=TOLERANCE)
    assert got < recorded["before"]


def test_recorded_share_of_test_leaves_is_assessed(leaf_dataset: Path, manifest: dict) -> None:
    method = manifest["ood"]["candidate"]
    recorded = manifest["ood"]["candidates"][method]["test_assessed_share"]
    _, _, assessed = _assess_test(leaf_dataset)
    assert float(np.mean(assessed)) == pytest.approx(recorded, abs=TOLERANCE)


def test_recorded_share_of_out_of_distribution_images_is_unknown(
    leaf_dataset: Path, manifest: dict
) -> None:
    from models.calibrate import ood_images
    from models.data import read_split

    test = [s for s in read_split(MODEL_DIR / "split.csv") if s.split == "test"]
    clf = load_classifier(MODEL_DIR, delegate="cpu", threads=2)
    method = manifest["ood"]["candidate"]
    recorded = manifest["ood"]["candidates"][method]["unknown_share"]
    for name, images in ood_images(leaf_dataset, test).items():
        unknown = np.mean([not a.in_distribution for a in clf.assess_batch(images)])
        assert float(unknown) == pytest.approx(recorded[name], abs=0.03), name


def test_synthetic_camera_stand_ins_reproduce(manifest: dict) -> None:
    from models.stand_ins import evaluate

    recorded = manifest["evaluation"]["synthetic_camera"]
    got = evaluate(load_classifier(MODEL_DIR, delegate="cpu", threads=2))
    for case, figures in recorded.items():  # one frame or tile more or less across CPUs
        if isinstance(figures, dict):
            for key, value in figures.items():
                if key.endswith("_share"):
                    assert got[case][key] == pytest.approx(value, abs=0.02), (case, key)
                else:
                    assert got[case][key] == value, (case, key)
    assert got["no_plant"]["whole_frame_unknown_share"] == 1.0
    assert got["lights_at_5_percent"]["whole_frame_unknown_share"] == 1.0
    assert got["healthy_phase"]["tile_problem_share"] <= 0.02


def test_model_card_is_rendered_from_the_manifest(manifest: dict, tmp_path: Path) -> None:
    from models.card import write_card

    write_card(manifest, tmp_path / "card.md")
    shipped = MODEL_DIR.parent / "README.md"
    assert (tmp_path / "card.md").read_text() == shipped.read_text(), (
        "models/README.md is out of date: run python -m models.card"
    )


def test_recorded_metrics_under_the_device_rule_are_reached(
    leaf_dataset: Path, manifest: dict
) -> None:
    from models.data import read_split
    from models.evaluate import shipped_rule_report, verdict_rule

    assert manifest["verdict_rule"] == verdict_rule()  # the device still applies this rule
    test = [s for s in read_split(MODEL_DIR / "split.csv") if s.split == "test"]
    got = shipped_rule_report(MODEL_DIR, leaf_dataset, test, manifest["labels"])
    recorded = manifest["metrics"]["test"]["int8_shipped_rule"]
    assert got["macro_f1"] == pytest.approx(recorded["macro_f1"], abs=TOLERANCE)
    assert got["assessed_share"] == pytest.approx(recorded["assessed_share"], abs=TOLERANCE)
