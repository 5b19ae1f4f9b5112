"""This grow's baseline: how the canopy looked on its first usable captures, and drift.

Drift is crop-agnostic: it compares the model's embedding and the canopy colour metrics
with their values on the first captures of the grow, each in units of the baseline's own
spread (with a floor, so a very steady baseline does not turn noise into alarms). The
largest of them is the drift: 1 is the edge of normal variation, 3 is a clear change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from edge.tables import BaselineSampleRow

# Smallest spread each signal is measured in: below these, changes are camera noise.
EMBEDDING_FLOOR = 0.1  # cosine distance
HUE_FLOOR_DEG = 2.0
GREENNESS_FLOOR = 0.02
COLOUR_FLOOR_PP = 2.0


@dataclass(frozen=True, slots=True)
class Sample:
    """What the baseline keeps of one capture."""

    seq: int
    captured_at: datetime
    kind: str  # "zones" (mean of zone embeddings) or "whole" (the whole photo)
    embedding: npt.NDArray[np.float32]
    hue_mean_deg: float | None
    greenness_index: float | None
    yellow_pct: float | None  # None: colour not measured under this light
    brown_pct: float | None

    def row(self) -> BaselineSampleRow:
        """The database row of this sample."""
        return BaselineSampleRow(
            seq=self.seq,
            captured_at=self.captured_at,
            kind=self.kind,
            embedding=np.asarray(self.embedding, dtype=np.float32).tobytes(),
            hue_mean_deg=self.hue_mean_deg,
            greenness_index=self.greenness_index,
            yellow_pct=self.yellow_pct,
            brown_pct=self.brown_pct,
        )


def _from_row(row: BaselineSampleRow) -> Sample:
    return Sample(
        row.seq,
        row.captured_at,
        row.kind,
        np.frombuffer(row.embedding, dtype=np.float32).copy(),
        row.hue_mean_deg,
        row.greenness_index,
        row.yellow_pct,
        row.brown_pct,
    )


def _scalar_drift(values: list[float | None], value: float | None, floor: float) -> float | None:
    known = [v for v in values if v is not None]
    if value is None or not known:
        return None
    spread = max(float(np.std(known)), floor)
    return abs(value - float(np.mean(known))) / spread


def _circular_gap(a: float, b: float) -> float:
    gap = abs(a - b) % 360.0
    return min(gap, 360.0 - gap)


class GrowBaseline:
    """The baseline samples of one camera's grow; thread-safe (page reset vs capture)."""

    def __init__(self, size: int, samples: list[Sample] | None = None) -> None:
        self.size = size
        self._samples = list(samples or [])[:size]
        self._lock = threading.Lock()

    @classmethod
    def load(cls, engine: Engine, size: int) -> GrowBaseline:
        """The baseline stored in the device database."""
        with Session(engine) as s:
            rows = s.execute(select(BaselineSampleRow).order_by(BaselineSampleRow.seq)).scalars()
            return cls(size, [_from_row(r) for r in rows])

    @property
    def count(self) -> int:
        """Samples taken so far."""
        return len(self._samples)

    @property
    def ready(self) -> bool:
        """Whether the baseline is complete and drift can be measured."""
        return len(self._samples) >= self.size

    @property
    def started_at(self) -> datetime | None:
        """When the first sample of this grow's baseline was taken."""
        return self._samples[0].captured_at if self._samples else None

    def wants(self, sample: Sample) -> bool:
        """Whether this sample still belongs in the baseline."""
        with self._lock:
            return not self.ready and all(s.seq != sample.seq for s in self._samples)

    def add(self, sample: Sample) -> None:
        """Take a sample (after it was committed)."""
        with self._lock:
            if len(self._samples) < self.size:
                self._samples.append(sample)

    def reset(self, engine: Engine) -> None:
        """Forget the baseline (a new grow); the next usable captures set a new one."""
        with self._lock, Session(engine) as s, s.begin():
            s.execute(delete(BaselineSampleRow))
            self._samples.clear()

    def drift(self, sample: Sample) -> float | None:
        """Distance of a capture from the baseline in baseline spreads; None until ready."""
        with self._lock:
            if not self.ready:
                return None
            base = list(self._samples)
        parts = []
        same = [b.embedding for b in base if b.kind == sample.kind]
        if same:
            centre = np.mean(np.stack(same), axis=0)
            centre /= max(float(np.linalg.norm(centre)), 1e-12)
            own = [1.0 - float(e @ centre) for e in same]
            spread = max(float(np.percentile(own, 95)), EMBEDDING_FLOOR)
            parts.append((1.0 - float(sample.embedding @ centre)) / spread)
        hues = [b.hue_mean_deg for b in base if b.hue_mean_deg is not None]
        if hues and sample.hue_mean_deg is not None:
            centre_deg = float(np.mean(hues))  # hues of living leaves sit far from 0/360
            gaps = [_circular_gap(h, centre_deg) for h in hues]
            spread = max(float(np.sqrt(np.mean(np.square(gaps)))), HUE_FLOOR_DEG)
            parts.append(_circular_gap(sample.hue_mean_deg, centre_deg) / spread)
        for values, value, floor in (
            ([b.greenness_index for b in base], sample.greenness_index, GREENNESS_FLOOR),
            ([b.yellow_pct for b in base], sample.yellow_pct, COLOUR_FLOOR_PP),
            ([b.brown_pct for b in base], sample.brown_pct, COLOUR_FLOOR_PP),
        ):
            d = _scalar_drift(list(values), value, floor)
            if d is not None:
                parts.append(d)
        return round(max(parts), 2) if parts else None
