"""The plant-health verdict of one photo: whole leaf close-up, or zone by zone.

A verdict is declined (label ``unknown``, ``assessed`` false, a reason in plain words)
when the photo cannot support one: no plant in view, unusable exposure, or a photo the
model finds unlike its training data. Scores are reported either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge.config import HealthConfig
from edge.protocol import HealthBlock, HealthSummary, ZoneCell, ZoneGrid
from edge.vision import Analysis
from edge.zones import Grid, ZoneCache, tile_plant_region, tile_side

UNKNOWN = "unknown"
HEALTHY = "healthy"
NO_PLANT = "no plant in view"
TOO_DARK = "too dark to judge the leaves"
TOO_BRIGHT = "too bright: the leaves are washed out"
UNFAMILIAR = "not a leaf close-up the model knows"
UNFAMILIAR_CANOPY = "most of the canopy looks unlike the leaves the model knows"
UNSURE = "the model is unsure about these leaves"
UNSURE_PROBLEM = "not sure enough to name a problem"


class Assessor(Protocol):
    """What the verdict needs from the classifier (edge.inference.PlantHealthClassifier)."""

    def assess_batch(self, rgbs: Sequence[npt.NDArray[np.uint8]]) -> list[Any]:
        """Assessments of several images in one invoke."""
        ...


@dataclass(frozen=True, slots=True)
class Verdict:
    """The health block and the embedding the grow baseline compares."""

    health: HealthBlock
    embedding: npt.NDArray[np.float32]


def _r(value: float) -> float:
    return round(float(value), 4)


def _decline_reason(analysis: Analysis, config: HealthConfig) -> str | None:
    verdict = analysis.exposure.verdict
    if verdict == "under":
        return TOO_DARK
    if verdict == "over":
        return TOO_BRIGHT
    if analysis.canopy.cover_pct < config.min_cover_pct:
        return NO_PLANT
    return None


def declined(
    label: str, confidence: float, in_distribution: bool, config: HealthConfig
) -> str | None:
    """Why the model's verdict on one image or zone does not stand; None when it does.

    A problem label needs ``problem_min_confidence``: below it, healthy leaves of crops
    the model never saw were mostly called diseased (the leave-one-crop-out figures of
    the model card, which models.loco counts with this same rule).
    """
    if not in_distribution:
        return UNFAMILIAR
    if confidence < config.min_confidence:
        return UNSURE
    if label != HEALTHY and confidence < config.problem_min_confidence:
        return UNSURE_PROBLEM
    return None


def _normalised(rows: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float32]:
    mean = np.mean(np.stack(rows), axis=0).astype(np.float32)
    return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-12), dtype=np.float32)


def judge(
    rgb: npt.NDArray[np.uint8],
    analysis: Analysis,
    classifier: Assessor,
    config: HealthConfig,
    px_per_cm: float | None = None,
    full_width: int | None = None,
    cache: ZoneCache | None = None,
) -> Verdict:
    """Classify a photo in one batched call and decide whether the verdict stands.

    With a ``cache`` (a fixed camera), zones that look as they did when last assessed keep
    that assessment and only the changed ones go into the call with the whole image.
    """
    canopy = analysis.canopy.cover_pct < config.closeup_cover_pct
    grid: Grid | None = None
    tiles: list[npt.NDArray[np.uint8]] = []
    if canopy:
        scale = analysis.analysed_size[0] / float(full_width or analysis.analysed_size[0])
        side = tile_side(config.zone_tile_px, config.zone_leaf_cm, px_per_cm, scale)
        grid = tile_plant_region(analysis.plant_mask, side, config.zone_min_plant_share)
        tiles = [rgb[t.y0 : t.y1, t.x0 : t.x1] for t in grid.tiles]
    if grid is None or cache is None:
        results = classifier.assess_batch([rgb, *tiles])
        whole, zones = results[0], results[1:]
    else:
        key = (_model_key(classifier), rgb.shape, grid.rows, grid.cols, grid.tile_px)
        stale, signatures = cache.stale(key, grid, tiles)
        results = classifier.assess_batch([rgb, *(tiles[i] for i in stale)])
        whole = results[0]
        fresh = dict(zip(stale, results[1:], strict=True))
        zones = cache.update(grid, signatures, fresh, _reusable)
    reason = _decline_reason(analysis, config)
    if grid is None or not zones:
        if reason is None:
            reason = declined(whole.label, whole.confidence, whole.in_distribution, config)
        health = _block(whole.label, whole.confidence, whole.scores, whole.ood_score, reason)
        return Verdict(health, np.asarray(whole.embedding, dtype=np.float32))
    embedding = _normalised([z.embedding for z in zones])
    cells, summary, scores = _roll_up(grid, zones, config)
    least = max(config.zone_min_assessed_share, 1e-9)
    if reason is None and summary.assessed_share < least:
        total = sum(t.plant_share for t in grid.tiles)
        familiar = sum(
            t.plant_share for t, z in zip(grid.tiles, zones, strict=True) if z.in_distribution
        )
        reason = UNFAMILIAR_CANOPY if familiar < least * total else UNSURE_PROBLEM
    if scores is None:
        scores = {k: _r(v) for k, v in whole.scores.items()}
    label = max(scores, key=lambda k: scores[k])
    if reason is None:
        reason = declined(label, scores[label], True, config)
    zone_grid = ZoneGrid(rows=grid.rows, cols=grid.cols, tile_px=grid.tile_px, cells=cells)
    health = _block(label, scores[label], scores, whole.ood_score, reason)
    health = health.model_copy(update={"zones": zone_grid, "summary": summary})
    return Verdict(health, embedding)


def _reusable(zone: Any) -> bool:
    """A zone's assessment may be kept unless it flags a problem (see ZoneCache)."""
    return not zone.in_distribution or zone.label == HEALTHY


def _model_key(classifier: Assessor) -> object:
    """What identifies the model: its file hash when it has one (a reload swaps it)."""
    info = getattr(classifier, "info", None)
    return getattr(info, "sha256", None) or id(classifier)


def _block(
    label: str, confidence: float, scores: dict[str, float], ood: float, reason: str | None
) -> HealthBlock:
    return HealthBlock(
        label=UNKNOWN if reason else label,
        confidence=_r(confidence),
        scores={k: _r(v) for k, v in scores.items()},
        assessed=reason is None,
        reason=reason,
        ood_score=_r(ood),
    )


def _roll_up(
    grid: Grid, zones: list[Any], config: HealthConfig
) -> tuple[list[ZoneCell], HealthSummary, dict[str, float] | None]:
    """Zone cells, the summary, and plant-weighted mean scores of assessed zones.

    A zone is unknown when it is unlike the training data or names a problem below
    ``problem_min_confidence`` (see declined()).
    """
    cells = []
    total = assessed = 0.0
    shares: dict[str, float] = {}
    weighted: dict[str, float] = {}
    worst: tuple[float, str, str] | None = None
    for tile, z in zip(grid.tiles, zones, strict=True):
        unsure = z.label != HEALTHY and z.confidence < config.problem_min_confidence
        label = UNKNOWN if not z.in_distribution or unsure else z.label
        cells.append(
            ZoneCell(
                zone=tile.name,
                row=tile.row,
                col=tile.col,
                label=label,
                confidence=_r(z.confidence),
                plant_share=tile.plant_share,
            )
        )
        total += tile.plant_share
        if label == UNKNOWN:
            continue
        assessed += tile.plant_share
        shares[label] = shares.get(label, 0.0) + tile.plant_share
        for k, v in z.scores.items():
            weighted[k] = weighted.get(k, 0.0) + tile.plant_share * float(v)
        if label != HEALTHY and (worst is None or z.confidence > worst[0]):
            worst = (float(z.confidence), tile.name, label)
    summary = HealthSummary(
        assessed_share=_r(assessed / total) if total else 0.0,
        shares={k: _r(v / assessed) for k, v in sorted(shares.items())} if assessed else {},
        worst_zone=worst[1] if worst else None,
        worst_label=worst[2] if worst else None,
        worst_confidence=_r(worst[0]) if worst else None,
    )
    scores = {k: v / assessed for k, v in weighted.items()} if assessed else None
    return cells, summary, scores
