"""Hostile command payloads over a real Mosquitto: none may silence the commands worker."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.agent import Agent
from edge.clock import FakeClock
from edge.commands import MAX_COMMAND_BYTES, CommandRunner, parse_command
from edge.protocol import CommandResult
from edge.supervise import Supervisor
from tests.mqtt_client import Recorder
from tests.test_mqtt import DEVICE, command, mqtt_config

DEEP = b"[" * 100000 + b"]" * 100000


@pytest.fixture
def agent_and_recorder(
    tmp_path: Path, broker: Any, clock: FakeClock
) -> Iterator[tuple[Agent, Recorder]]:
    rec = Recorder(broker.host, broker.port, [f"cultivai/v1/{DEVICE}/#"])
    agent = Agent(mqtt_config(tmp_path, broker), clock=clock).start()
    try:
        assert agent.link is not None and agent.link.listening.wait(20)
        yield agent, rec
    finally:
        agent.close()
        rec.close()


@pytest.mark.parametrize(
    "payload",
    [
        DEEP,  # 200 KB: refused for its size
        b"[" * 30000 + b"]" * 30000,  # within the size limit, far beyond the nesting limit
        b'{"request_id": "r", "x": ' + b"{" * 5000 + b"}" * 5000 + b"}",
    ],
    ids=["100000-deep", "30000-deep", "5000-deep-object"],
)
def test_a_deeply_nested_capture_is_refused_and_later_commands_are_answered(
    broker: Any, agent_and_recorder: tuple[Agent, Recorder], payload: bytes
) -> None:
    _, rec = agent_and_recorder
    refused = command(broker, rec, "capture", payload)
    assert refused["ok"] is False
    assert "bytes" in refused["error"] or "levels deep" in refused["error"]
    resent = command(broker, rec, "resend", '{"from_seq": 1, "to_seq": 1, "request_id": "after"}')
    assert resent["ok"] is True and resent["request_id"] == "after"


def test_nesting_is_bounded_before_parsing_in_the_one_place_commands_are_parsed() -> None:
    with pytest.raises(ValueError, match="more than 8 levels deep"):
        parse_command("capture", b"[" * 30000 + b"]" * 30000)
    with pytest.raises(ValueError, match="bytes; the limit is"):
        parse_command("capture", b" " * (MAX_COMMAND_BYTES + 1))
    # Brackets inside strings are text, not nesting.
    cmd = parse_command("capture", b'{"request_id": "' + b"[" * 60 + b'"}')
    assert cmd.request_id == "[" * 60
    assert parse_command("capture", b"").request_id is None


class _Target:
    """A device whose capture works; nothing else is called in these tests."""

    def command_capture(self) -> dict[str, Any]:
        return {"seq": 1}

    def command_reload_model(self) -> dict[str, Any]:
        return {}

    def command_resend(self, from_seq: int, to_seq: int) -> dict[str, Any]:
        return {}

    def command_set_schedule(self, cmd: Any) -> dict[str, Any]:
        return {}


def test_a_worker_that_dies_anyway_is_restarted_counted_and_reported() -> None:
    answered: list[CommandResult] = []
    got_one = threading.Event()
    fail_next = [True]

    def answer(result: CommandResult) -> None:
        if fail_next[0]:  # an unforeseen bug on the answer path, outside every handler
            fail_next[0] = False
            raise RuntimeError("answer path broke")
        answered.append(result)
        got_one.set()

    registry = CollectorRegistry()
    runner = CommandRunner("cam-1", _Target(), answer, Supervisor(registry, first_backoff_s=0.01))
    runner.start()
    try:
        runner.submit("capture", b'{"request_id": "lost"}')
        runner.submit("capture", b'{"request_id": "second"}')
        assert got_one.wait(20), "the commands worker did not come back"
        assert [r.request_id for r in answered] == ["second"]
        problems = runner.supervisor.problems()
        assert len(problems) == 1 and "commands worker restarted 1x" in problems[0]
        assert "RuntimeError: answer path broke" in problems[0]
        text = generate_latest(registry).decode()
        assert 'cultivai_worker_restarts_total{worker="commands"} 1.0' in text
        assert 'cultivai_worker_up{worker="commands"} 1.0' in text
    finally:
        runner.stop()
