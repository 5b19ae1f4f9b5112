"""Bad messages are kept as dead letters and acknowledged; fuzzed traffic never stops the bridge."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from cloud_bridge.decode import Accepted, Limits, decode
from cloud_bridge.service import Bridge
from cloud_bridge.store import Envelope, FleetStore
from cloud_bridge.tables import DeadLetter
from tests.bridge.conftest import count, dead_letter_count
from tests.bridge.factory import observation, observation_message, publish_all, wait_for
from tests.bridge.test_decode import JSON_VALUES, mutated_observations

TOPIC = "cultivai/v1/cam-1/observation"


def _acked(bridge: Bridge) -> float:
    return bridge.metrics.acked._value.get()


def _bad_messages() -> list[tuple[str, bytes]]:
    valid = observation("cam-1", 1).model_dump(mode="json")
    missing = dict(valid)
    del missing["captured_at"]
    return [
        (TOPIC, b"{not json"),
        (TOPIC, json.dumps({**valid, "seq": "one"}).encode()),
        (TOPIC, json.dumps(missing).encode()),
        (TOPIC, json.dumps({**valid, "device_id": "cam-2"}).encode()),
        (TOPIC, b'{"pad": "' + b"x" * 3000 + b'"}'),
        (TOPIC, b'{"seq": NaN}'),
    ]


def test_bad_messages_become_dead_letters_and_are_acknowledged(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    settings_ = {"batching": {"max_payload_bytes": 2048}, "mqtt": {"client_id": "bridge-dl"}}
    bridge = start_bridge(**settings_)
    publish_all(broker.host, broker.port, [*_bad_messages(), observation_message("cam-1", 1)])
    wait_for(lambda: _acked(bridge) >= 7, 10, "seven acknowledgements")
    with engine.connect() as conn:
        letters = conn.execute(select(DeadLetter).order_by(DeadLetter.id)).all()
    reasons = [row.error.split(":")[0] for row in letters]
    assert reasons == ["json", "invalid", "invalid", "device_mismatch", "oversize", "unsafe"]
    assert letters[0].payload == b"{not json" and letters[0].topic == TOPIC
    assert letters[4].size == 3011 and len(letters[4].payload) == 2048
    assert count(engine) == 1
    bridge.stop()
    again = start_bridge(**settings_)
    publish_all(broker.host, broker.port, [observation_message("cam-1", 2)])
    wait_for(lambda: count(engine) == 2, 10, "the next observation")
    assert _acked(again) == 1, "dead letters were delivered again: they had not been acked"
    assert dead_letter_count(engine) == 6


def test_a_resent_seq_with_different_content_is_a_dead_letter(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    bridge = start_bridge()
    reset = observation("cam-1", 1, captured_at=datetime(2026, 5, 1, tzinfo=timezone.utc))
    publish_all(broker.host, broker.port, [observation_message("cam-1", 1)])
    wait_for(lambda: _acked(bridge) >= 1, 10, "the first observation")
    publish_all(broker.host, broker.port, [(TOPIC, reset.model_dump_json().encode())])
    wait_for(lambda: _acked(bridge) >= 2, 10, "the conflicting observation")
    with engine.connect() as conn:
        error = conn.execute(select(DeadLetter.error)).scalar_one()
    assert error.startswith("conflict:") and "seq counter reset" in error
    assert count(engine) == 1


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=mutated_observations())
def test_every_accepted_observation_can_be_stored(engine: Engine, payload: bytes) -> None:
    decoded = decode(TOPIC, payload, Limits(262_144, 65_536))
    if isinstance(decoded, Accepted):
        store = FleetStore(engine, dead_letter_max_bytes=1024)
        envelope = Envelope(TOPIC, payload, datetime.now(timezone.utc), decoded)
        store.write([envelope])


LIVE_PAYLOADS = st.lists(
    mutated_observations()
    | st.binary(max_size=300)
    | JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    min_size=40,
    max_size=40,
)


@settings(
    max_examples=4,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payloads=LIVE_PAYLOADS)
def test_fuzzed_traffic_never_stops_a_running_bridge(
    broker: Any, live_bridge: Bridge, payloads: list[bytes]
) -> None:
    before = _acked(live_bridge)
    kinds = ["observation", "status", "alert", "stats"]
    messages = [(f"cultivai/v1/cam-1/{kinds[i % 4]}", p) for i, p in enumerate(payloads)]
    publish_all(broker.host, broker.port, messages)
    wait_for(lambda: _acked(live_bridge) >= before + len(messages), 15, "every fuzzed message")
    assert live_bridge.failed() is None
