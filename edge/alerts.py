"""Debounced alerts from observations.

Rules, each raising one alert and clearing it when the condition has ended:
- a problem class from the plant-health model above `problem_confidence` on
  `problem_consecutive` captures in a row; cleared after as many captures without it.
  On a canopy the rule runs per zone and the alert names its zone;
- drift from this grow's baseline at or above `health.drift_alert` on
  `problem_consecutive` captures in a row ("canopy changed since baseline");
- a sharp rise of `yellow_pct` (yellowing) or `brown_pct` (browning) of at least
  `rise_pp` points over the camera's recent baseline (the median of the last
  `baseline_captures` normal captures), on `problem_consecutive` captures in a row;
  cleared when the value is back within half that rise of the baseline taken when
  the alert was raised, on as many captures in a row;
- VPD out of the growth stage's target range (`sensors.vpd`) on `consecutive`
  captures in a row, judged on leaf VPD when the leaf temperature is known and on
  air VPD otherwise; cleared after as many captures back in range. A capture
  without a VPD (sensor not fitted or failed) neither raises nor clears.

An unknown verdict (not assessed) never counts toward raising or clearing a model
alert, and photos whose canopy cannot be measured (no plant, bad exposure) or whose
colour was not measured (narrow-band LED light, too dark: the value is null) are left
out of the colour rules too: they neither raise nor clear, and streaks stay as they were.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from edge.config import AlertsConfig, HealthConfig
from edge.protocol import Alert, HealthBlock, Observation
from edge.sensors.settings import VpdTargetSettings
from edge.tables import AlertRow

HEALTHY = "healthy"
UNKNOWN = "unknown"
AlertKind = Literal["health", "zone", "drift", "yellowing", "browning", "vpd"]
COLOUR_RULES: tuple[tuple[str, AlertKind], ...] = (
    ("yellow_pct", "yellowing"),
    ("brown_pct", "browning"),
)
MIN_BASELINE = 3


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A decision to raise or clear one alert."""

    action: Literal["raise", "clear"]
    kind: AlertKind
    label: str | None
    message: str
    value: float | None
    baseline: float | None = None
    zone: str | None = None

    @property
    def key_label(self) -> str | None:
        """The label an open alert is kept under: zone alerts add their zone."""
        return f"{self.label}:{self.zone}" if self.zone else self.label


@dataclass
class _Open:
    alert_id: int
    baseline: float | None
    streak: int = 0  # captures in a row without the condition


class AlertEngine:
    """Keeps per-rule streaks and the colour baseline; decides raise/clear events."""

    def __init__(
        self,
        config: AlertsConfig,
        open_alerts: list[AlertRow],
        health: HealthConfig | None = None,
        vpd: VpdTargetSettings | None = None,
    ) -> None:
        self.config = config
        self.health_config = health or HealthConfig()
        self.vpd_config = vpd or VpdTargetSettings()
        self._vpd_streak = 0
        self._problem_streak: dict[str, int] = {}
        self._zone_streak: dict[str, int] = {}
        self._drift_streak = 0
        self._history = {
            metric: deque[float](maxlen=config.baseline_captures) for metric, _ in COLOUR_RULES
        }
        self._rise_streak = {metric: 0 for metric, _ in COLOUR_RULES}
        self._open: dict[tuple[str, str | None], _Open] = {
            (row.kind, row.label): _Open(row.id, row.baseline) for row in open_alerts
        }

    def warm_up(self, history: list[Observation]) -> None:
        """Rebuild streaks and baselines from stored observations after a restart."""
        for obs in history:
            self.evaluate(obs, replay=True)

    def evaluate(self, obs: Observation, replay: bool = False) -> list[AlertEvent]:
        """Update the rules with one observation; the events to apply (none on replay)."""
        health = obs.health
        events = []
        if health is not None and health.assessed and health.label != UNKNOWN:
            zoned = health.zones is not None and bool(health.zones.cells)
            events += self._zones(health) if zoned else self._health(obs)
        events += self._drift(obs)
        if self._measurable(obs):
            events += self._colour(obs)
        events += self._vpd(obs)
        return [] if replay else events

    def _vpd(self, obs: Observation) -> list[AlertEvent]:
        c, climate = self.vpd_config, obs.climate
        if climate is None:
            return []
        which, value = "Leaf", climate.leaf_vpd_kpa
        if value is None or not c.use_leaf:
            which, value = "Air", climate.air_vpd_kpa
        if value is None:
            return []  # no VPD measured: no evidence either way
        target = c.target()
        state = self._open.get(("vpd", None))
        if target is None:
            if state is None:
                return []
            return [AlertEvent("clear", "vpd", None, "VPD alerts off: no growth stage set", value)]
        low, high = target
        inside = low <= value <= high
        if state is not None:
            state.streak = state.streak + 1 if inside else 0
            if state.streak >= c.consecutive:
                return [
                    AlertEvent(
                        "clear",
                        "vpd",
                        None,
                        f"{which} VPD back in the {c.stage} range ({value:.2f} kPa, "
                        f"target {low:.2f}-{high:.2f})",
                        value,
                    )
                ]
            return []
        self._vpd_streak = 0 if inside else self._vpd_streak + 1
        if self._vpd_streak >= c.consecutive:
            side = "above" if value > high else "below"
            return [
                AlertEvent(
                    "raise",
                    "vpd",
                    None,
                    f"{which} VPD {value:.2f} kPa {side} the {c.stage} target "
                    f"{low:.2f}-{high:.2f} kPa on {self._vpd_streak} captures in a row",
                    value,
                )
            ]
        return []

    def _measurable(self, obs: Observation) -> bool:
        return (
            obs.exposure.verdict == "ok"
            and obs.canopy.cover_pct >= self.health_config.min_cover_pct
        )

    def _zones(self, health: HealthBlock) -> list[AlertEvent]:
        c = self.config
        assert health.zones is not None
        flagged = {
            f"{cell.label}:{cell.zone}": cell
            for cell in health.zones.cells
            if cell.label not in (HEALTHY, UNKNOWN) and cell.confidence >= c.problem_confidence
        }
        self._zone_streak = {k: self._zone_streak.get(k, 0) + 1 for k in flagged}
        events = []
        for key, cell in flagged.items():
            streak = self._zone_streak[key]
            if streak >= c.problem_consecutive and ("zone", key) not in self._open:
                events.append(
                    AlertEvent(
                        "raise",
                        "zone",
                        cell.label,
                        f"{_words(cell.label)} in zone {cell.zone} on {streak} captures in a row",
                        cell.confidence,
                        zone=cell.zone,
                    )
                )
        for (kind, open_key), state in self._open.items():
            if kind != "zone" or open_key is None:
                continue
            state.streak = 0 if open_key in flagged else state.streak + 1
            if state.streak >= c.problem_consecutive:
                label, _, zone = open_key.partition(":")
                events.append(
                    AlertEvent(
                        "clear",
                        "zone",
                        label,
                        f"{_words(label)} no longer seen in zone {zone}",
                        None,
                        zone=zone,
                    )
                )
        return events

    def _drift(self, obs: Observation) -> list[AlertEvent]:
        drift = obs.health.drift if obs.health is not None else None
        if drift is None:
            return []  # no baseline yet, or a photo the baseline cannot be compared with
        c, limit = self.config, self.health_config.drift_alert
        state = self._open.get(("drift", None))
        if state is not None:
            state.streak = state.streak + 1 if drift < limit / 2 else 0
            if state.streak >= c.problem_consecutive:
                return [
                    AlertEvent(
                        "clear",
                        "drift",
                        None,
                        f"Canopy back near its baseline (drift {drift:.1f})",
                        drift,
                    )
                ]
            return []
        self._drift_streak = self._drift_streak + 1 if drift >= limit else 0
        if self._drift_streak >= c.problem_consecutive:
            return [
                AlertEvent(
                    "raise",
                    "drift",
                    None,
                    f"Canopy changed since baseline (drift {drift:.1f} on "
                    f"{self._drift_streak} captures in a row)",
                    drift,
                )
            ]
        return []

    def _health(self, obs: Observation) -> list[AlertEvent]:
        c = self.config
        health = obs.health
        problem = None
        if health and health.label != HEALTHY and health.confidence >= c.problem_confidence:
            problem = health.label
        for seen in list(self._problem_streak):
            if seen != problem:
                self._problem_streak[seen] = 0
        events = []
        if problem is not None:
            streak = self._problem_streak.get(problem, 0) + 1
            self._problem_streak[problem] = streak
            if streak >= c.problem_consecutive and ("health", problem) not in self._open:
                assert obs.health is not None
                events.append(
                    AlertEvent(
                        "raise",
                        "health",
                        problem,
                        f"{_words(problem)} seen on {streak} captures in a row",
                        obs.health.confidence,
                    )
                )
        for (kind, label), state in self._open.items():
            if kind != "health":
                continue
            state.streak = 0 if label == problem else state.streak + 1
            if state.streak >= c.problem_consecutive:
                events.append(
                    AlertEvent("clear", "health", label, f"{_words(label)} no longer seen", None)
                )
        return events

    def _colour(self, obs: Observation) -> list[AlertEvent]:
        c = self.config
        events = []
        for metric, kind in COLOUR_RULES:
            measured = getattr(obs.canopy, metric)
            if measured is None:  # colour not measurable under this light: no evidence either way
                continue
            value = float(measured)
            history = self._history[metric]
            state = self._open.get((kind, None))
            if state is not None:
                baseline = state.baseline or 0.0
                back = value - baseline < c.rise_pp / 2
                state.streak = state.streak + 1 if back else 0
                if state.streak >= c.problem_consecutive:
                    events.append(
                        AlertEvent(
                            "clear",
                            kind,
                            None,
                            f"{kind.capitalize()} back to {value:.1f} % of the canopy "
                            f"(baseline {baseline:.1f} %)",
                            value,
                            baseline,
                        )
                    )
                continue
            if len(history) >= MIN_BASELINE:
                baseline = statistics.median(history)
                if value - baseline >= c.rise_pp:
                    self._rise_streak[metric] += 1
                    if self._rise_streak[metric] >= c.problem_consecutive:
                        events.append(
                            AlertEvent(
                                "raise",
                                kind,
                                None,
                                f"{kind.capitalize()} rose to {value:.1f} % of the canopy "
                                f"from a baseline of {baseline:.1f} %",
                                value,
                                baseline,
                            )
                        )
                    continue  # rising values stay out of the baseline
            self._rise_streak[metric] = 0
            history.append(value)
        return events

    def applied(self, event: AlertEvent, alert_id: int) -> None:
        """Record that an event was committed."""
        key = (event.kind, event.key_label)
        if event.action == "raise":
            self._open[key] = _Open(alert_id, event.baseline)
            if event.kind == "drift":
                self._drift_streak = 0
            elif event.kind == "vpd":
                self._vpd_streak = 0
            elif event.kind in ("yellowing", "browning"):
                self._rise_streak[_metric(event.kind)] = 0
        else:
            self._open.pop(key, None)

    def open_id(self, event: AlertEvent) -> int | None:
        """The id of the open alert an event clears."""
        state = self._open.get((event.kind, event.key_label))
        return state.alert_id if state else None


def _words(label: str | None) -> str:
    """A class name as the start of a sentence: leaf_spot -> Leaf spot."""
    return (label or "problem").replace("_", " ").capitalize()


def _metric(kind: str) -> str:
    return next(metric for metric, k in COLOUR_RULES if k == kind)


def alert_row(event: AlertEvent, at: datetime, seq: int) -> AlertRow:
    """The database row of a raised alert."""
    return AlertRow(
        kind=event.kind,
        label=event.key_label,
        message=event.message,
        value=event.value,
        baseline=event.baseline,
        raised_at=at,
        raised_seq=seq,
    )


def alert_message(
    device_id: str, alert_id: int, event: AlertEvent, at: datetime, seq: int
) -> Alert:
    """The wire message for an applied event."""
    return Alert(
        device_id=device_id,
        alert_id=alert_id,
        kind=event.kind,
        state="raised" if event.action == "raise" else "cleared",
        at=at,
        seq=seq,
        label=event.label,
        zone=event.zone,
        message=event.message,
        value=event.value,
        baseline=event.baseline,
    )
