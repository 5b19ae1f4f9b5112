"""Classification metrics in plain numpy: per-class P/R/F1, macro-F1, confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def confusion(y_true: Sequence[int], y_pred: Sequence[int], n: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class."""
    cm = np.zeros((n, n), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[t, p] += 1
    return cm


def report(y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support, macro-F1 (over classes present), accuracy."""
    cm = confusion(y_true, y_pred, len(labels))
    per_class: dict[str, dict[str, float | int]] = {}
    f1s = []
    for i, label in enumerate(labels):
        tp, support, predicted = int(cm[i, i]), int(cm[i].sum()), int(cm[:, i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(f1, 4),
            "support": support,
        }
        if support:
            f1s.append(f1)
    total = int(cm.sum())
    return {
        "per_class": per_class,
        "macro_f1": round(float(np.mean(f1s)) if f1s else 0.0, 4),
        "accuracy": round(float(np.trace(cm)) / total if total else 0.0, 4),
        "images": total,
        "confusion_matrix": {"labels": list(labels), "rows_true_cols_pred": cm.tolist()},
    }
