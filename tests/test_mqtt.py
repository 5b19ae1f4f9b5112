"""Publishing over a real Mosquitto: outbox drain, outages, status, commands, discovery."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.agent import Agent
from edge.clock import FakeClock
from edge.mqtt import backoff_delay
from edge.protocol import Thumbnail
from tests.conftest import make_config
from tests.mqtt_client import Recorder, publish

DEVICE = "test-cam"


def mqtt_config(tmp_path: Path, broker: Any, **mqtt: Any) -> Any:
    return make_config(
        tmp_path / "data",
        camera={"width": 320, "height": 240},
        mqtt={
            "enabled": True,
            "host": broker.host,
            "port": broker.port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
            **mqtt,
        },
    )


@pytest.fixture
def start_agent(clock: FakeClock) -> Iterator[Callable[[Any], Agent]]:
    """Starts agents on the fake clock and closes them even when a test fails."""
    started: list[Agent] = []

    def start(cfg: Any) -> Agent:
        agent = Agent(cfg, clock=clock).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.close()


@pytest.fixture
def recorder(broker: Any) -> Iterator[Recorder]:
    rec = Recorder(broker.host, broker.port, [f"cultivai/v1/{DEVICE}/#", "homeassistant/#"])
    yield rec
    rec.close()


def seqs(rec: Recorder) -> list[int]:
    return [m["seq"] for m in rec.json("/observation")]


def test_observations_arrive_in_seq_order(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    agent = start_agent(mqtt_config(tmp_path, broker))
    agent.run(max_captures=10)
    assert recorder.wait_for(lambda: len(seqs(recorder)) >= 10)
    assert seqs(recorder) == list(range(1, 11))
    assert recorder.wait_for(lambda: agent.store.stats().outbox_depth == 0)
    agent.close()


def test_broker_outage_loses_nothing_and_keeps_order(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    agent = start_agent(mqtt_config(tmp_path, broker))
    agent.run(max_captures=5)
    assert recorder.wait_for(lambda: len(seqs(recorder)) >= 5)
    broker.stop()
    agent.run(max_captures=20)  # captured while the broker is away
    assert agent.store.stats().outbox_depth >= 20
    broker.start()
    assert recorder.wait_for(lambda: set(seqs(recorder)) >= set(range(1, 26)), timeout=60)
    received = seqs(recorder)
    assert sorted(set(received)) == list(range(1, 26))
    first_seen = list(dict.fromkeys(received))
    assert first_seen == sorted(first_seen)  # duplicates only as redeliveries, never reordered
    assert recorder.wait_for(lambda: agent.store.stats().outbox_depth == 0)
    agent.close()


def test_status_is_retained_online_then_offline_on_clean_stop(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    agent = start_agent(mqtt_config(tmp_path, broker))
    assert recorder.wait_for(lambda: any(s["state"] == "online" for s in recorder.json("/status")))
    online = next(s for s in recorder.json("/status") if s["state"] == "online")
    assert online["firmware"] and online["ip"] == "127.0.0.1"
    agent.close()
    assert recorder.wait_for(lambda: recorder.json("/status")[-1]["state"] == "offline")
    late = Recorder(broker.host, broker.port, [f"cultivai/v1/{DEVICE}/status"], client_id="late")
    assert late.wait_for(lambda: bool(late.on("/status")))
    assert late.on("/status")[0].retain
    assert late.json("/status")[0]["state"] == "offline"
    late.close()


def test_stats_are_published_periodically(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    agent = start_agent(mqtt_config(tmp_path, broker, stats_interval_s=5))
    agent.run(max_captures=1)
    assert recorder.wait_for(lambda: bool(recorder.json("/stats")), timeout=20)
    stats = recorder.json("/stats")[0]
    assert stats["captures_ok"] == 1 and stats["disk_free_bytes"] > 0
    assert "outbox_depth" in stats
    agent.close()


def command(broker: Any, recorder: Recorder, name: str, payload: str | bytes) -> dict[str, Any]:
    before = len(recorder.on("/cmd_result"))
    publish(broker.host, broker.port, f"cultivai/v1/{DEVICE}/cmd/{name}", payload)
    assert recorder.wait_for(lambda: len(recorder.on("/cmd_result")) > before, timeout=20)
    return recorder.json("/cmd_result")[before]


@pytest.fixture
def live_agent(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> Iterator[Agent]:
    agent = start_agent(mqtt_config(tmp_path, broker))
    assert agent.link is not None and agent.link.listening.wait(20)
    yield agent
    agent.close()


def test_capture_command(broker: Any, recorder: Recorder, live_agent: Agent) -> None:
    result = command(broker, recorder, "capture", '{"request_id": "r1"}')
    assert result["ok"] is True and result["request_id"] == "r1"
    assert result["detail"]["seq"] == 1
    assert recorder.wait_for(lambda: seqs(recorder) == [1])


def test_resend_command_republishes_stored_rows_and_names_missing_ones(
    broker: Any, recorder: Recorder, live_agent: Agent
) -> None:
    live_agent.run(max_captures=3)
    assert recorder.wait_for(lambda: len(seqs(recorder)) == 3)
    result = command(broker, recorder, "resend", '{"from_seq": 2, "to_seq": 5}')
    assert result["ok"] is True
    assert result["detail"] == {"resent": 2, "missing": [[4, 5]]}
    assert recorder.wait_for(lambda: seqs(recorder) == [1, 2, 3, 2, 3])


def test_set_schedule_command(broker: Any, recorder: Recorder, live_agent: Agent) -> None:
    result = command(broker, recorder, "set-schedule", '{"interval_s": 120}')
    assert result["ok"] is True and result["detail"]["interval_s"] == 120
    assert live_agent.schedule.interval.total_seconds() == 120


def test_reload_model_command_keeps_going_without_a_model(
    broker: Any, recorder: Recorder, live_agent: Agent
) -> None:
    result = command(broker, recorder, "reload-model", "{}")
    assert result["ok"] is True  # the model is disabled in the test config
    assert result["detail"]["name"] is None


@pytest.mark.parametrize(
    ("name", "payload", "error"),
    [
        ("capture", b"{not json", "not valid JSON"),
        ("capture", b"[1, 2]", "must be a JSON object"),
        ("resend", b'{"from_seq": "one", "to_seq": 2}', "from_seq"),
        ("resend", b'{"from_seq": 5, "to_seq": 2}', "to_seq must be >= from_seq"),
        ("resend", b'{"to_seq": 2}', "from_seq: required setting is missing"),
        ("set-schedule", b'{"interval_s": 0}', "interval_s"),
        ("capture", b'{"bogus": 1}', "bogus: unknown setting"),
        ("self-destruct", b"{}", "unknown command 'self-destruct'"),
        ("capture", b"\xff\xfe", "invalid command"),
    ],
)
def test_bad_commands_get_a_clear_error_and_the_agent_keeps_running(
    broker: Any, recorder: Recorder, live_agent: Agent, name: str, payload: bytes, error: str
) -> None:
    result = command(broker, recorder, name, payload)
    assert result["ok"] is False
    assert error in result["error"]
    assert command(broker, recorder, "capture", "{}")["ok"] is True  # still alive


HA_REQUIRED = {
    "sensor": {"state_topic", "unique_id", "device", "name"},
    "binary_sensor": {"state_topic", "unique_id", "device", "name"},
    "image": {"image_topic", "unique_id", "device", "name"},
}


def test_home_assistant_discovery_is_retained_and_reannounced(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    cfg = mqtt_config(tmp_path, broker, homeassistant_discovery=True, thumbnails=True)
    agent = start_agent(cfg)
    assert recorder.wait_for(lambda: len(recorder.on("/config")) >= 10)
    configs = {m.topic: json.loads(m.payload) for m in recorder.on("/config")}
    late = Recorder(broker.host, broker.port, ["homeassistant/#"], client_id="ha-late")
    assert late.wait_for(lambda: len(late.on("/config")) == len(configs))
    assert all(m.retain for m in late.on("/config"))  # HA finds them after its own restart
    late.close()
    platforms = {t.split("/")[1] for t in configs}
    assert platforms == {"sensor", "binary_sensor", "image"}
    for topic_, cfg_ in configs.items():
        platform = topic_.split("/")[1]
        assert HA_REQUIRED[platform] <= set(cfg_), topic_
        assert cfg_["device"]["identifiers"] == [f"cultivai_{DEVICE}"]
        assert cfg_["availability_topic"] == f"cultivai/v1/{DEVICE}/status"
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(unique_ids) == len(set(unique_ids))
    count = len(recorder.on("/config"))
    publish(broker.host, broker.port, "homeassistant/status", "online")
    assert recorder.wait_for(lambda: len(recorder.on("/config")) >= 2 * count)
    agent.run(max_captures=1)
    assert recorder.wait_for(lambda: bool(recorder.on("/thumbnail/raw")))
    thumb = Thumbnail.model_validate_json(recorder.on("/thumbnail")[0].payload)
    assert thumb.seq == 1 and thumb.data[:3] == b"\xff\xd8\xff"
    raw = recorder.on("/thumbnail/raw")[0]
    assert raw.payload == thumb.data  # Home Assistant gets the same JPEG, bare
    assert ("seq", "1") in raw.properties.UserProperty
    agent.close()


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff_delay(a, 1.0, 60.0, rng) for a in range(10)]
    for attempt, d in enumerate(delays):
        ceiling = min(60.0, 2.0**attempt)
        assert ceiling / 2 <= d <= ceiling
    assert max(delays) <= 60.0


def test_mqtt_3_1_1_works_when_chosen(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    agent = start_agent(mqtt_config(tmp_path, broker, protocol="3.1.1"))
    agent.run(max_captures=2)
    assert recorder.wait_for(lambda: seqs(recorder) == [1, 2])
    assert any(s["state"] == "online" for s in recorder.json("/status"))
    agent.close()


def test_outbox_overflow_is_counted_in_stats_and_metrics(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    broker.stop()
    cfg = mqtt_config(tmp_path, broker, outbox_max_messages=100)
    agent = start_agent(cfg)
    with agent.store.transaction() as tx:
        for i in range(130):
            tx.enqueue("cultivai/v1/test-cam/observation", f'{{"n": {i}}}')
    stats = agent.stats_message()
    assert stats.outbox_depth == 100 and stats.outbox_dropped == 30
    dropped = agent.metrics.registry.get_sample_value("cultivai_outbox_dropped_total")
    assert dropped == 30  # read while the broker is still down
    agent.close()


def test_an_unexpected_error_in_the_publisher_does_not_stop_publishing(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    agent = start_agent(mqtt_config(tmp_path, broker))
    assert agent.link is not None
    outbox = agent.link.outbox
    real_pending = outbox.pending
    failures = []

    def flaky_pending(after_id: int, limit: int) -> Any:
        if not failures:
            failures.append(after_id)
            raise RuntimeError("simulated bug")
        return real_pending(after_id, limit)

    outbox.pending = flaky_pending  # type: ignore[method-assign]
    agent.run(max_captures=3)
    assert recorder.wait_for(lambda: seqs(recorder)[-3:] == [1, 2, 3] if seqs(recorder) else False)
    assert failures
    agent.close()


def test_every_observation_arrives_with_every_optional_publication_on(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    # The QoS 0 thumbnail/raw messages must free their place in the send window
    # like QoS 1 ones do, or the outbox stalls after a few windows of captures.
    cfg = mqtt_config(
        tmp_path, broker, homeassistant_discovery=True, thumbnails=True, inflight_window=3
    )
    agent = start_agent(cfg)
    captures = 200
    agent.run(max_captures=captures)
    assert recorder.wait_for(lambda: len(seqs(recorder)) >= captures, timeout=120)
    assert seqs(recorder) == list(range(1, captures + 1))
    thumb_seqs = [Thumbnail.model_validate_json(m.payload).seq for m in recorder.on("/thumbnail")]
    assert thumb_seqs == list(range(1, captures + 1))
    assert recorder.wait_for(lambda: agent.store.stats().outbox_depth == 0)


def test_only_the_newest_retained_thumbnail_waits_in_the_outbox(
    tmp_path: Path, broker: Any, start_agent: Callable[[Any], Agent]
) -> None:
    broker.stop()
    cfg = mqtt_config(tmp_path, broker, homeassistant_discovery=True, thumbnails=True)
    agent = start_agent(cfg)
    agent.run(max_captures=5)
    assert agent.link is not None
    waiting = agent.link.outbox.pending(0, 100)
    raw = [m for m in waiting if m.topic.endswith("/thumbnail/raw")]
    assert [m.seq for m in raw] == [5]  # a restart sends one JPEG, not every stale one
    assert len([m for m in waiting if m.topic.endswith("/observation")]) == 5


def test_outbox_depth_and_age_are_reported_during_an_outage_and_nothing_is_lost(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    cfg = mqtt_config(tmp_path, broker, homeassistant_discovery=True, thumbnails=True)
    agent = start_agent(cfg)
    agent.run(max_captures=2)
    assert recorder.wait_for(lambda: seqs(recorder) == [1, 2])
    broker.stop()
    agent.run(max_captures=3)
    sample = agent.metrics.registry.get_sample_value
    waiting = agent.store.stats().outbox_depth
    assert waiting >= 3
    assert sample("cultivai_outbox_depth") == waiting
    assert (sample("cultivai_outbox_oldest_age_seconds") or 0) > 0
    assert sample("cultivai_broker_connected") == 0
    broker.start()
    assert recorder.wait_for(lambda: seqs(recorder)[-3:] == [3, 4, 5])
    assert recorder.wait_for(lambda: sample("cultivai_outbox_depth") == 0)
    age = sample("cultivai_last_publish_age_seconds")
    assert age is not None and 0 <= age < float("inf")  # a number, no longer NaN
    raw = [m for m in recorder.on("/thumbnail/raw") if m.properties.UserProperty]
    assert dict(raw[-1].properties.UserProperty)["seq"] == "5"


def test_thumbnail_contract_as_the_readme_documents_it(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    # Read as a third-party client would: plain JSON and base64, no edge imports.
    import base64

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "cultivai/v1/<device_id>/thumbnail/raw QoS 0, retained" in readme
    assert "cultivai/v1/<device_id>/thumbnail     QoS 1" in readme
    cfg = mqtt_config(tmp_path, broker, homeassistant_discovery=True, thumbnails=True)
    agent = start_agent(cfg)
    agent.run(max_captures=2)
    assert recorder.wait_for(lambda: len(recorder.on("/thumbnail")) >= 2)
    thumbs = recorder.on("/thumbnail")
    for expected_seq, msg in enumerate(thumbs, start=1):
        assert msg.qos == 1 and not msg.retain
        body = json.loads(msg.payload)
        assert body["schema_version"] == 1 and body["device_id"] == DEVICE
        assert body["seq"] == expected_seq and body["content_type"] == "image/jpeg"
        assert base64.b64decode(body["data"])[:3] == b"\xff\xd8\xff"
    newest = base64.b64decode(json.loads(thumbs[-1].payload)["data"])
    late = Recorder(broker.host, broker.port, [f"cultivai/v1/{DEVICE}/thumbnail/raw"], "late")
    try:
        assert late.wait_for(lambda: bool(late.on("/thumbnail/raw")))
        raw = late.on("/thumbnail/raw")[0]
        assert raw.retain and raw.qos == 0  # a late subscriber gets the newest one
        assert raw.payload == newest
        assert raw.properties.ContentType == "image/jpeg"
        assert ("seq", "2") in raw.properties.UserProperty
    finally:
        late.close()


def test_broker_restarts_during_captures_lose_no_message_of_any_qos(
    tmp_path: Path, broker: Any, recorder: Recorder, start_agent: Callable[[Any], Agent]
) -> None:
    import threading

    cfg = mqtt_config(
        tmp_path, broker, homeassistant_discovery=True, thumbnails=True, inflight_window=1
    )
    agent = start_agent(cfg)
    captures = 120
    worker = threading.Thread(target=agent.run, kwargs={"max_captures": captures})
    worker.start()
    for target in (10, 30, 50, 70):  # restart the broker while messages are in flight
        assert recorder.wait_for(lambda t=target: len(set(seqs(recorder))) >= t, timeout=120)
        broker.stop()
        broker.start()
    worker.join(300)
    assert recorder.wait_for(lambda: len(set(seqs(recorder))) >= captures, timeout=120)
    assert sorted(set(seqs(recorder))) == list(range(1, captures + 1))
    assert recorder.wait_for(lambda: agent.store.stats().outbox_depth == 0)
    late = Recorder(broker.host, broker.port, [f"cultivai/v1/{DEVICE}/thumbnail/raw"], "late")
    try:  # the retained JPEG is the newest capture's, whatever was lost on the way
        assert late.wait_for(lambda: bool(late.on("/thumbnail/raw")))
        assert ("seq", str(captures)) in late.on("/thumbnail/raw")[0].properties.UserProperty
    finally:
        late.close()
