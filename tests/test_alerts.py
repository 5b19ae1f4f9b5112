"""Debounced alerts: problem classes on consecutive captures, colour rising over baseline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from edge.agent import Agent
from edge.alerts import AlertEngine
from edge.clock import FakeClock
from edge.config import AlertsConfig
from edge.protocol import (
    CanopyBlock,
    ExposureBlock,
    HealthBlock,
    ImageBlock,
    Observation,
)
from tests.conftest import make_config

T0 = datetime(2026, 3, 2, 8, tzinfo=timezone.utc)
CONFIG = AlertsConfig(problem_confidence=0.7, problem_consecutive=3, rise_pp=8, baseline_captures=6)


def obs(
    seq: int,
    label: str = "healthy",
    confidence: float = 0.9,
    yellow: float | None = 2.0,
    brown: float | None = 0.5,
) -> Observation:
    return Observation(
        device_id="cam",
        seq=seq,
        captured_at=T0 + timedelta(minutes=15 * seq),
        camera="synthetic",
        canopy=CanopyBlock(
            cover_pct=40, area_px=1, yellow_pct=yellow, brown_pct=brown, exg_threshold=0.1
        ),
        exposure=ExposureBlock(verdict="ok", mean_luma=90, under_pct=0, over_pct=0, sharpness=1),
        image=ImageBlock(width=10, height=10, stored=False),
        health=HealthBlock(label=label, confidence=confidence, scores={label: confidence}),
    )


def run(engine: AlertEngine, observations: list[Observation]) -> list[tuple[int, str, str]]:
    out = []
    next_id = 1
    for o in observations:
        for e in engine.evaluate(o):
            alert_id = next_id if e.action == "raise" else engine.open_id(e) or 0
            next_id += e.action == "raise"
            engine.applied(e, alert_id)
            out.append((o.seq, e.action, e.label or e.kind))
    return out


def test_problem_class_alerts_after_n_consecutive_captures_and_clears_after_n_without() -> None:
    labels = [
        "healthy",
        "leaf_spot",
        "leaf_spot",
        "leaf_spot",
        "leaf_spot",
        "healthy",
        "healthy",
        "healthy",
    ]
    events = run(AlertEngine(CONFIG, []), [obs(i + 1, label) for i, label in enumerate(labels)])
    assert events == [(4, "raise", "leaf_spot"), (8, "clear", "leaf_spot")]


def test_an_interrupted_or_unsure_problem_does_not_alert() -> None:
    seq = [
        ("leaf_spot", 0.9),
        ("leaf_spot", 0.9),
        ("healthy", 0.9),
        ("leaf_spot", 0.9),
        ("leaf_spot", 0.5),
        ("leaf_spot", 0.9),
        ("leaf_spot", 0.95),
    ]
    events = run(AlertEngine(CONFIG, []), [obs(i + 1, lab, c) for i, (lab, c) in enumerate(seq)])
    assert events == []


def test_yellowing_rise_over_baseline_alerts_once_and_clears() -> None:
    yellows = [
        2,
        3,
        2,
        2,
        3,
        2,  # baseline ~2
        12,
        14,
        15,
        16,
        17,  # sharp rise: raise on the third
        6,
        4,
        3,
        3,
    ]  # back within half the rise (< 4 points): clear on the third
    events = run(AlertEngine(CONFIG, []), [obs(i + 1, yellow=y) for i, y in enumerate(yellows)])
    assert events == [(9, "raise", "yellowing"), (15, "clear", "yellowing")]


def test_slow_drift_moves_the_baseline_and_does_not_alert() -> None:
    yellows = [2 + 0.5 * i for i in range(40)]  # +20 points over 40 captures
    assert run(AlertEngine(CONFIG, []), [obs(i + 1, yellow=y) for i, y in enumerate(yellows)]) == []


def test_unmeasured_colour_neither_raises_nor_clears_nor_breaks_a_streak() -> None:
    # None: the light made colour unmeasurable. Such captures count for nothing.
    yellows: list[float | None] = [2, 3, 2, 2, 3, 2, 12, None, 14, None, 15]
    events = run(AlertEngine(CONFIG, []), [obs(i + 1, yellow=y) for i, y in enumerate(yellows)])
    assert events == [(11, "raise", "yellowing")]  # the rise streak survived the gaps
    later: list[float | None] = [None] * 10 + [3, None, 3, 3]
    more = [obs(12 + i, yellow=y, brown=y) for i, y in enumerate(later)]
    engine = AlertEngine(CONFIG, [])
    assert run(engine, [obs(i + 1, yellow=y) for i, y in enumerate(yellows)] + more) == [
        (11, "raise", "yellowing"),
        (25, "clear", "yellowing"),  # only measured captures clear it, three in a row
    ]


def test_unmeasured_colour_stays_out_of_the_baseline() -> None:
    engine = AlertEngine(CONFIG, [])
    run(engine, [obs(1, yellow=None, brown=None) for _ in range(10)])
    # No measured history yet: a high first value is the baseline, not a rise.
    assert run(engine, [obs(11 + i, yellow=20, brown=9) for i in range(6)]) == []


def test_browning_has_its_own_rule() -> None:
    browns = [0.5] * 6 + [10, 11, 12]
    events = run(AlertEngine(CONFIG, []), [obs(i + 1, brown=b) for i, b in enumerate(browns)])
    assert events == [(9, "raise", "browning")]


class ScriptedClassifier:
    """A classifier double for the agent: the model itself is tested in test_inference."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = labels
        self.calls = 0

    def assess_batch(self, rgbs: list[Any]) -> list[Any]:
        from types import SimpleNamespace

        import numpy as np

        label = self.labels[min(self.calls, len(self.labels) - 1)]
        self.calls += 1
        one = SimpleNamespace(
            label=label,
            confidence=0.95,
            scores={label: 0.95},
            ood_score=0.0,
            in_distribution=True,
            embedding=np.ones(4, np.float32) / 2,
        )
        return [one for _ in rgbs]


def test_agent_stores_alerts_and_keeps_them_open_across_a_restart(
    tmp_path: Path, clock: FakeClock
) -> None:
    cfg = make_config(
        tmp_path,
        camera={"width": 320, "height": 240},
        alerts={"problem_consecutive": 2},
        health={"closeup_cover_pct": 0},  # whole-photo verdicts: the zone rule is tested apart
    )
    agent = Agent(cfg, clock=clock).start()
    agent.observer.classifier = ScriptedClassifier(["healthy", "pest_damage", "pest_damage"])
    agent.run(max_captures=3)
    open_alerts = agent.store.open_alerts()
    assert [(a.kind, a.label, a.raised_seq) for a in open_alerts] == [("health", "pest_damage", 3)]
    agent.close()

    agent = Agent(cfg, clock=clock).start()  # restart: the alert is still open, not raised again
    agent.observer.classifier = ScriptedClassifier(["pest_damage", "healthy", "healthy"])
    agent.run(max_captures=3)
    alerts = agent.store.alerts()
    assert len(alerts) == 1
    assert alerts[0].cleared_seq == 6
    agent.close()


def zoned(seq: int, cells: list[tuple[str, str, float]], assessed: bool = True) -> Observation:
    """A canopy observation whose zones carry (zone, label, confidence)."""
    from edge.protocol import ZoneCell, ZoneGrid

    grid = ZoneGrid(
        rows=4,
        cols=4,
        tile_px=80,
        cells=[
            ZoneCell(
                zone=z,
                row=ord(z[0]) - 65,
                col=int(z[1:]) - 1,
                label=lb,
                confidence=c,
                plant_share=0.8,
            )
            for z, lb, c in cells
        ],
    )
    base = obs(seq)
    assert base.health is not None
    health = base.health.model_copy(
        update={
            "zones": grid,
            "assessed": assessed,
            "label": "healthy" if assessed else "unknown",
            "reason": None if assessed else "most of the canopy looks unlike the leaves",
        }
    )
    return base.model_copy(update={"health": health})


def test_a_zone_flagged_on_n_captures_raises_one_alert_naming_the_zone() -> None:
    engine = AlertEngine(CONFIG, [])
    captures = [zoned(i, [("B3", "leaf_spot", 0.9), ("A1", "healthy", 0.9)]) for i in range(1, 7)]
    events = []
    next_id = 1
    for o in captures:
        for e in engine.evaluate(o):
            events.append((o.seq, e))
            engine.applied(e, next_id)
            next_id += 1
    assert [(seq, e.action, e.kind, e.label, e.zone) for seq, e in events] == [
        (3, "raise", "zone", "leaf_spot", "B3")
    ]
    assert "zone B3" in events[0][1].message


def test_a_problem_hopping_between_zones_does_not_alert() -> None:
    engine = AlertEngine(CONFIG, [])
    zones = ["A1", "B2", "C3", "A1", "B2", "C3"]
    captures = [zoned(i + 1, [(z, "leaf_spot", 0.9)]) for i, z in enumerate(zones)]
    assert run(engine, captures) == []


def test_unknown_never_alerts_even_when_confident() -> None:
    engine = AlertEngine(CONFIG, [])
    unknown = [
        obs(i, "pest_damage", 0.99).model_copy(
            update={
                "health": HealthBlock(
                    label="unknown",
                    confidence=0.99,
                    scores={"pest_damage": 0.99},
                    assessed=False,
                    reason="not a leaf close-up the model knows",
                )
            }
        )
        for i in range(1, 8)
    ]
    declined_canopy = [zoned(i, [("B3", "leaf_spot", 0.95)], assessed=False) for i in range(8, 15)]
    assert run(engine, unknown + declined_canopy) == []


def test_unknown_captures_do_not_clear_an_open_problem() -> None:
    engine = AlertEngine(CONFIG, [])
    problem = [obs(i, "pest_damage", 0.95) for i in range(1, 4)]
    unknown = [
        obs(i).model_copy(
            update={
                "health": HealthBlock(
                    label="unknown", confidence=0.5, scores={}, assessed=False, reason="too dark"
                )
            }
        )
        for i in range(4, 10)
    ]
    assert run(engine, problem + unknown) == [(3, "raise", "pest_damage")]


def test_alert_message_names_the_problem_once() -> None:
    engine = AlertEngine(CONFIG, [])
    events = [
        e for o in [obs(i, "leaf_spot", 0.9) for i in range(1, 4)] for e in engine.evaluate(o)
    ]
    assert [e.message for e in events] == ["Leaf spot seen on 3 captures in a row"]


def drifting(seq: int, drift: float | None) -> Observation:
    base = obs(seq)
    assert base.health is not None
    return base.model_copy(update={"health": base.health.model_copy(update={"drift": drift})})


def test_drift_that_persists_raises_canopy_changed_once_and_clears() -> None:
    engine = AlertEngine(CONFIG, [])
    values = [None, 0.4, 0.6, 3.5, 1.0, 3.2, 3.4, 4.0, 4.5, 5.0, 1.0, 0.8, 0.9]
    out = run(engine, [drifting(i + 1, v) for i, v in enumerate(values)])
    assert out == [(8, "raise", "drift"), (13, "clear", "drift")]


def test_colour_alert_messages_are_in_the_growers_words() -> None:
    engine = AlertEngine(CONFIG, [])
    captures = [obs(i, yellow=2.0) for i in range(1, 7)] + [
        obs(i, yellow=14.0) for i in range(7, 10)
    ]
    messages = [e.message for o in captures for e in engine.evaluate(o)]
    assert messages == ["Yellowing rose to 14.0 % of the canopy from a baseline of 2.0 %"]
