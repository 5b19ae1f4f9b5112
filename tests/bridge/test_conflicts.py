"""A seq stored twice with the same capture time but other content is a dead letter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, select

from cloud_bridge.service import Bridge
from cloud_bridge.tables import DeadLetter, ObservationRow
from tests.bridge.conftest import count, dead_letter_count
from tests.bridge.factory import observation, observation_message, publish_all, wait_for

TOPIC = "cultivai/v1/cam-1/observation"


def _acked(bridge: Bridge) -> float:
    return bridge.metrics.acked._value.get()


def _other_content() -> tuple[str, bytes]:
    """seq 1 of cam-1, same captured_at as the factory's, another health label."""
    first = observation("cam-1", 1)
    other = observation("cam-1", 1, label="yellowing", captured_at=first.captured_at)
    assert other.captured_at == first.captured_at and other != first
    return TOPIC, other.model_dump_json().encode()


def _label(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(ObservationRow.health_label)).scalar_one()


def test_same_seq_and_capture_time_with_other_content_is_a_dead_letter(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    bridge = start_bridge()
    publish_all(broker.host, broker.port, [observation_message("cam-1", 1)])
    wait_for(lambda: _acked(bridge) >= 1, 10, "the first observation")
    publish_all(broker.host, broker.port, [_other_content()])
    wait_for(lambda: _acked(bridge) >= 2, 10, "the conflicting observation")
    with engine.connect() as conn:
        error = conn.execute(select(DeadLetter.error)).scalar_one()
    assert error.startswith("conflict:") and "content" in error
    assert count(engine) == 1 and _label(engine) == "healthy"


def test_the_same_conflict_inside_one_batch_is_a_dead_letter(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    bridge = start_bridge(batching={"max_messages": 500, "max_seconds": 1.0})
    publish_all(broker.host, broker.port, [observation_message("cam-1", 1), _other_content()])
    wait_for(lambda: _acked(bridge) >= 2, 10, "both observations")
    assert dead_letter_count(engine) == 1 and count(engine) == 1


def test_an_exact_resend_is_a_duplicate_not_a_dead_letter(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    bridge = start_bridge()
    publish_all(broker.host, broker.port, [observation_message("cam-1", 1)])
    wait_for(lambda: _acked(bridge) >= 1, 10, "the first observation")
    publish_all(broker.host, broker.port, [observation_message("cam-1", 1)])
    wait_for(lambda: _acked(bridge) >= 2, 10, "the resent observation")
    assert dead_letter_count(engine) == 0 and count(engine) == 1
    assert bridge.metrics.duplicates.labels("observation")._value.get() == 1
