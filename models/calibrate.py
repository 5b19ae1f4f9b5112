"""Fit calibration and the out-of-distribution score of a shipped model, without TensorFlow.

python -m models.calibrate --data DIR [--model models/plant_health]

Temperature scaling is fitted on the validation split (NLL); the out-of-distribution
method is chosen by AUROC (validation leaves vs images made here, see
models/ood_sets.py) and its threshold is the 95th percentile of validation scores.
Everything measured goes into manifest.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge.inference import PlantHealthClassifier, load_classifier
from edge.inference.manifest import encode_array, sha256_hex
from edge.inference.ood import (
    ExposureScorer,
    MahalanobisScorer,
    energy_score,
    max_softmax_score,
)
from edge.inference.preprocess import load_rgb, resize_square
from models import ood_sets
from models.data import Sample, read_split
from models.metrics import report
from models.outputs import add_head_outputs

log = logging.getLogger("models.calibrate")
F64 = npt.NDArray[np.float64]
ECE_BINS = 15
THRESHOLD_QUANTILE = 0.95
MAHALANOBIS_DIMS = (64, 128, 256, 384)  # candidates; the best by AUROC ships


def features(
    clf: PlantHealthClassifier, images: Iterable[npt.NDArray[np.uint8]], batch: int = 32
) -> tuple[F64, F64, npt.NDArray[np.float32]]:
    """Calibrated probabilities, logits and embeddings of ``images``, in batches."""
    chunks: list[tuple[Any, Any, Any]] = []
    pending: list[npt.NDArray[np.uint8]] = []
    for image in images:
        pending.append(image)
        if len(pending) == batch:
            chunks.append(clf.features(pending))
            pending = []
    if pending:
        chunks.append(clf.features(pending))
    return tuple(np.concatenate([c[i] for c in chunks]) for i in range(3))  # type: ignore[return-value]


def softmax(logits: F64) -> F64:
    """Row-wise softmax."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float64)


def nll(logits: F64, truth: npt.NDArray[np.int64], temperature: float) -> float:
    """Mean negative log-likelihood of the true labels at ``temperature``."""
    p = softmax(logits / temperature)
    return float(-np.mean(np.log(p[np.arange(len(truth)), truth] + 1e-12)))


def fit_temperature(logits: F64, truth: npt.NDArray[np.int64]) -> float:
    """Temperature minimising validation NLL (log-spaced grid, then a finer grid)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
    best = min(grid, key=lambda t: nll(logits, truth, float(t)))
    fine = np.linspace(best * 0.97, best * 1.03, 61)
    return float(min(fine, key=lambda t: nll(logits, truth, float(t))))


def ece(probs: F64, truth: npt.NDArray[np.int64], bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top label over equal-width confidence bins."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lo, hi in itertools.pairwise(edges):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            total += inside.mean() * abs(conf[inside].mean() - correct[inside].mean())
    return float(total)


def auroc(in_dist: F64, out_dist: F64) -> float:
    """P(score of an OOD image > score of an in-distribution image), ties count half."""
    scores = np.concatenate([in_dist, out_dist])
    ranks = np.empty(len(scores))
    order = scores.argsort(kind="mergesort")
    ranks[order] = np.arange(1, len(scores) + 1)
    for value in np.unique(scores):  # average ranks of ties
        same = scores == value
        if same.sum() > 1:
            ranks[same] = ranks[same].mean()
    r_out = ranks[len(in_dist) :].sum()
    n_in, n_out = len(in_dist), len(out_dist)
    return float((r_out - n_out * (n_out + 1) / 2) / (n_in * n_out))


def fit_mahalanobis(
    emb: npt.NDArray[np.float32], y: npt.NDArray[np.int64], classes: int, dims: int
) -> dict[str, npt.NDArray[np.float32]]:
    """Centre, whitening projection (PCA to ``dims``, shared within-class covariance) and means."""
    centre = emb.mean(axis=0)
    x = (emb - centre).astype(np.float64)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    basis = vt[:dims].T
    z = x @ basis
    present = [c for c in range(classes) if np.any(y == c)]  # a held-out crop can lack some
    means = np.zeros((classes, dims))
    for c in present:
        means[c] = z[y == c].mean(axis=0)
    within = z - means[y]
    cov = within.T @ within / len(z)
    cov += np.eye(dims) * 1e-3 * np.trace(cov) / dims  # shrinkage: rare classes are small
    evals, evecs = np.linalg.eigh(cov)
    whiten = evecs / np.sqrt(evals)
    projection = basis @ whiten
    return {
        "centre": centre.astype(np.float32),
        "projection": projection.astype(np.float32),
        "class_means": (means[present] @ whiten).astype(np.float32),
    }


def fit_exposure(
    maha: MahalanobisScorer,
    inside: npt.NDArray[np.float32],
    outside: npt.NDArray[np.float32],
    l2: float = 1e-5,
    steps: int = 6000,
) -> npt.NDArray[np.float32]:
    """Logistic regression, training leaves (0) vs generated non-leaf images (1), on the
    embedding plus the standardised Mahalanobis score; returns ExposureScorer's array."""
    m_in = maha(inside)
    mean, std = float(m_in.mean()), float(m_in.std() + 1e-9)
    emb = np.concatenate([inside, outside]).astype(np.float64)
    m = (np.concatenate([m_in, maha(outside)]) - mean) / std
    x = np.column_stack([emb, m, np.ones(len(emb))])
    y = np.concatenate([np.zeros(len(inside)), np.ones(len(outside))])
    weight = np.where(y == 1, 0.5 / len(outside), 0.5 / len(inside))  # balanced classes
    w = np.zeros(x.shape[1])
    lr, v, g2 = 0.05, np.zeros_like(w), np.zeros_like(w)
    for step in range(1, steps + 1):  # Adam on the weighted log-loss
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w, -30, 30)))
        grad = x.T @ (weight * (p - y)) + l2 * np.r_[w[:-1], 0.0]
        v = 0.9 * v + 0.1 * grad
        g2 = 0.999 * g2 + 0.001 * grad**2
        w -= lr * (v / (1 - 0.9**step)) / (np.sqrt(g2 / (1 - 0.999**step)) + 1e-8)
    return np.concatenate([w[:-2], [w[-2], mean, std, w[-1]]]).astype(np.float32)


def exposure_images(data_dir: Path, train: Sequence[Sample]) -> list[npt.NDArray[np.uint8]]:
    """Generated non-leaf images for fitting (other seeds and leaves than the OOD sets)."""
    leaves = [load_rgb(str(data_dir / s.file)) for s in train[::13][:80]]
    return [
        *ood_sets.synthetic_canopies(120, seed=5000),
        *ood_sets.textures(60, seed=6000),
        *ood_sets.scenes(60, seed=7000),
        *ood_sets.dark_frames(leaves[:30]),
        *ood_sets.colour_shifted(leaves),
    ]


def knn_score(bank: npt.NDArray[np.float32], emb: npt.NDArray[np.float32], k: int = 10) -> F64:
    """1 - cosine similarity to the k-th nearest training embedding (measured, not shipped)."""
    sims = emb @ bank.T
    kth = np.sort(sims, axis=1)[:, -k]
    return np.asarray(1.0 - kth, dtype=np.float64)


def ood_images(data_dir: Path, test: Sequence[Sample]) -> dict[str, list[npt.NDArray[np.uint8]]]:
    """The out-of-distribution sets, by name."""
    leaves = [load_rgb(str(data_dir / s.file)) for s in test[::9][:40]]
    return {
        "synthetic_canopy": list(ood_sets.synthetic_canopies(40, seed=100)),
        "random_texture": list(ood_sets.textures(40, seed=200)),
        "blank_frame": list(ood_sets.blank_frames()),
        "dark_frame": list(ood_sets.dark_frames(leaves[:20])),
        "rendered_scene": list(ood_sets.scenes(40, seed=300)),
        "colour_shifted_leaf": list(ood_sets.colour_shifted(leaves)),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: fit and record calibration and the OOD score of a model folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/leaf-health"))
    parser.add_argument("--model", type=Path, default=Path("models/plant_health"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    calibrate(args.data, args.model)


def calibrate(data_dir: Path, model_dir: Path) -> dict[str, Any]:
    """Fit temperature and OOD threshold, measure, write them into the manifest; return it."""
    args = argparse.Namespace(data=data_dir, model=model_dir)
    manifest_path = args.model / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    labels = manifest["labels"]

    tensors = manifest["output"].setdefault("tensors", {})
    for variant in ("int8", "float"):
        model_path = args.model / manifest["files"][variant]["file"]
        content = model_path.read_bytes()
        if variant not in tensors:
            content, tensors[variant] = add_head_outputs(content)
            model_path.write_bytes(content)
        manifest["files"][variant].update(sha256=sha256_hex(content), bytes=len(content))
    for key in ("calibration", "ood"):
        manifest.pop(key, None)
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    clf = load_classifier(args.model, delegate="cpu", threads=2)  # temperature 1, no OOD

    samples = read_split(args.model / "split.csv")
    split = {sp: [s for s in samples if s.split == sp] for sp in ("train", "val", "test")}
    feats = {}
    truth = {}
    for sp, members in split.items():
        images = (resize_square(load_rgb(str(args.data / s.file)), 160) for s in members)
        feats[sp] = features(clf, images)
        truth[sp] = np.array([labels.index(s.label) for s in members])
        log.info("features of %s: %d images", sp, len(members))

    temperature = fit_temperature(feats["val"][1], truth["val"])
    calibration: dict[str, Any] = {
        "method": "temperature scaling of the int8 model's logits, fitted on the validation "
        "split (minimum negative log-likelihood)",
        "temperature": round(temperature, 4),
        "ece_bins": ECE_BINS,
    }
    for sp in ("val", "test"):
        logits, y = feats[sp][1], truth[sp]
        calibration[f"ece_{sp}"] = {
            "before": round(ece(softmax(logits), y), 4),
            "after": round(ece(softmax(logits / temperature), y), 4),
        }
        calibration[f"nll_{sp}"] = {
            "before": round(nll(logits, y, 1.0), 4),
            "after": round(nll(logits, y, temperature), 4),
        }
    log.info("calibration: %s", calibration)

    maha_arrays = {
        dims: fit_mahalanobis(feats["train"][2], truth["train"], len(labels), dims)
        for dims in MAHALANOBIS_DIMS
    }
    maha = {dims: MahalanobisScorer(**arrays) for dims, arrays in maha_arrays.items()}
    bank = feats["train"][2]
    exposure_out = features(clf, exposure_images(args.data, split["train"]))[2]
    linear = {dims: fit_exposure(m, bank, exposure_out) for dims, m in maha.items()}
    exposure = {dims: ExposureScorer(maha[dims], linear[dims]) for dims in maha}

    def scores_of(probs: F64, logits: F64, emb: npt.NDArray[np.float32]) -> dict[str, F64]:
        return {
            "max_softmax": max_softmax_score(softmax(logits / temperature)),
            "energy": energy_score(logits, temperature),
            **{f"mahalanobis_{dims}d": scorer(emb) for dims, scorer in maha.items()},
            **{f"mahalanobis_{d}d_exposure": scorer(emb) for d, scorer in exposure.items()},
            "knn_cosine_k10": knn_score(bank, emb),
        }

    in_val = scores_of(*feats["val"])
    in_test = scores_of(*feats["test"])
    out_sets = {
        name: features(clf, imgs) for name, imgs in ood_images(args.data, split["test"]).items()
    }
    out_scores = {name: scores_of(*f) for name, f in out_sets.items()}
    methods = list(in_test)
    table: dict[str, Any] = {}
    for method in methods:
        all_out = np.concatenate([out_scores[n][method] for n in out_scores])
        threshold = float(np.quantile(in_val[method], THRESHOLD_QUANTILE))
        table[method] = {
            "auroc_all": round(auroc(in_test[method], all_out), 4),
            "auroc_all_val": round(auroc(in_val[method], all_out), 4),
            "auroc": {
                n: round(auroc(in_test[method], s[method]), 4) for n, s in out_scores.items()
            },
            "threshold_val_p95": round(threshold, 4),
            "test_assessed_share": round(float(np.mean(in_test[method] <= threshold)), 4),
            "unknown_share": {
                n: round(float(np.mean(s[method] > threshold)), 4) for n, s in out_scores.items()
            },
        }
        log.info("%s: %s", method, table[method])
    shippable = [m for m in methods if m != "knn_cosine_k10"]
    chosen = max(shippable, key=lambda m: table[m]["auroc_all_val"])
    method, dims = chosen, 0
    if chosen.startswith("mahalanobis"):
        parts = chosen.split("_")
        dims = int(parts[1][:-1])
        method = "mahalanobis_exposure" if chosen.endswith("_exposure") else "mahalanobis"
    ood: dict[str, Any] = {
        "method": method,
        "candidate": chosen,
        "threshold": table[chosen]["threshold_val_p95"],
        "threshold_rule": f"{THRESHOLD_QUANTILE:.0%} quantile of the validation split's scores",
        "chosen_by": "highest AUROC of validation leaves vs all out-of-distribution sets "
        "(the test figures are reported, not used for the choice)",
        "sets": {n: len(f[0]) for n, f in out_sets.items()},
        "exposure_images": len(exposure_out),
        "candidates": table,
    }
    if dims:
        arrays = dict(maha_arrays[dims])
        ood["embedding"] = (
            f"L2-normalised {bank.shape[1]}-value pooled features (penultimate layer), "
            f"PCA to {dims} dims whitened by the shared within-class covariance "
            "of the training split; Mahalanobis = squared distance to the nearest class mean"
        )
        if method == "mahalanobis_exposure":
            arrays["linear"] = linear[dims]
            ood["embedding"] += (
                f"; plus a logistic regression on the embedding and the standardised "
                f"Mahalanobis distance, fitted on the training leaves vs {len(exposure_out)} "
                "generated non-leaf images (outlier exposure; other seeds and leaves than "
                "the evaluation sets)"
            )
        ood["arrays"] = {k: encode_array(v, "float32" if k == "linear" else "float16")
                         for k, v in arrays.items()}  # fmt: skip
    manifest["calibration"] = calibration
    manifest["ood"] = ood
    for sp, scores in (("val", in_val[chosen]), ("test", in_test[chosen])):
        pred = np.where(scores <= ood["threshold"], feats[sp][1].argmax(axis=1), len(labels))
        rep = report(truth[sp].tolist(), pred.tolist(), [*labels, "unknown"])
        rep["assessed_share"] = round(float(np.mean(scores <= ood["threshold"])), 4)
        manifest.setdefault("metrics", {}).setdefault(sp, {})["int8_unknown_counted_wrong"] = rep
    log.info(
        "test with unknown counted wrong: macro-F1 %s, assessed %s",
        manifest["metrics"]["test"]["int8_unknown_counted_wrong"]["macro_f1"],
        manifest["metrics"]["test"]["int8_unknown_counted_wrong"]["assessed_share"],
    )
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("chose %s (AUROC %.4f), wrote %s", chosen, table[chosen]["auroc_all"], manifest_path)
    return manifest


if __name__ == "__main__":
    main()
