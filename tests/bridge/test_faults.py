"""No loss, no duplicates: bridge killed, database down, two bridges side by side."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from cloud_bridge.service import Bridge
from tests.bridge.conftest import bridge_settings, count, dead_letter_count, observation_keys
from tests.bridge.factory import observation_message, publish_all, wait_for
from tests.bridge.pg import PgCluster
from tests.bridge.process import BridgeProcess
from tests.mqtt_broker import free_port

pytestmark = pytest.mark.slow


def _messages(devices: int, per_device: int, prefix: str = "cam") -> list[tuple[str, bytes]]:
    """Observations interleaved across devices, as a fleet publishes them."""
    return [
        observation_message(f"{prefix}-{d:02d}", s)
        for s in range(1, per_device + 1)
        for d in range(devices)
    ]


def _writing(engine: Engine) -> bool:
    """True while a bridge of this database has a transaction open."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cultivai-bridge' "
        "AND datname = current_database() AND state IN ('idle in transaction', 'active')"
    )
    with engine.connect() as conn:
        return bool(conn.execute(query).scalar_one())


def _expected(devices: int, per_device: int, prefix: str = "cam") -> list[tuple[str, int]]:
    return sorted(
        (f"{prefix}-{d:02d}", s) for d in range(devices) for s in range(1, per_device + 1)
    )


class Publisher(threading.Thread):
    """Publishes in chunks in the background, so faults land in the middle of the stream."""

    def __init__(
        self, broker: Any, messages: list[tuple[str, bytes]], chunk: int = 100, pace_s: float = 0
    ) -> None:
        super().__init__(daemon=True)
        self.broker, self.messages, self.chunk, self.pace_s = broker, messages, chunk, pace_s
        self.sent = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(0, len(self.messages), self.chunk):
                part = self.messages[i : i + self.chunk]
                self.sent += publish_all(self.broker.host, self.broker.port, part)
                time.sleep(self.pace_s)
        except BaseException as exc:
            self.error = exc

    def finish(self, timeout: float = 60.0) -> None:
        self.join(timeout)
        assert not self.is_alive(), "publisher did not finish"
        assert self.error is None, self.error


@pytest.fixture
def bridge_process(
    broker: Any, pg_url: str, tmp_path: Path
) -> Iterator[Callable[..., BridgeProcess]]:
    """Make bridge processes on the test broker and database; all stopped at the end."""
    made: list[BridgeProcess] = []
    token_file = tmp_path / "token"
    token_file.write_text("test-token\n")

    def make(client_id: str, **sections: dict[str, Any]) -> BridgeProcess:
        defaults: dict[str, dict[str, Any]] = {
            "mqtt": {"client_id": client_id},
            "http": {"enabled": True, "port": free_port(), "token_file": str(token_file)},
            "batching": {"max_messages": 200, "max_seconds": 0.2},
            "logging": {"format": "json", "level": "INFO"},
        }
        settings = bridge_settings(broker, pg_url, **{**defaults, **sections})
        process = BridgeProcess(settings, tmp_path, f"{client_id}-{uuid.uuid4().hex[:4]}")
        made.append(process)
        return process

    yield make
    for process in made:
        if process.proc is not None:
            process.terminate()


def test_sigkill_mid_batch_and_restart_loses_and_repeats_nothing(
    broker: Any, engine: Engine, bridge_process: Callable[..., BridgeProcess]
) -> None:
    bridge = bridge_process("bridge-kill").start()
    publisher = Publisher(broker, _messages(30, 100), pace_s=0.05)
    publisher.start()
    for threshold in (600, 1600):
        wait_for(lambda: count(engine) >= threshold, 30, f"{threshold} rows")  # noqa: B023
        wait_for(lambda: _writing(engine), 10, "a batch transaction in progress", poll=0.001)
        bridge.kill()
        bridge = bridge_process("bridge-kill").start()
    publisher.finish()
    wait_for(lambda: count(engine) >= 3000, 30, "all 3000 rows")
    assert observation_keys(engine) == _expected(30, 100)
    assert dead_letter_count(engine) == 0
    assert bridge.terminate() == 0


def test_database_stopped_under_load_loses_nothing(
    broker: Any,
    engine: Engine,
    pg_cluster: PgCluster,
    start_bridge: Callable[..., Bridge],
) -> None:
    bridge = start_bridge()
    publisher = Publisher(broker, _messages(20, 100, "db"), chunk=50, pace_s=0.05)
    publisher.start()
    wait_for(lambda: count(engine) >= 300, 30, "300 rows before the outage")
    pg_cluster.stop()
    try:
        wait_for(lambda: bridge.metrics.db_up._value.get() == 0, 10, "the writer to notice")
        during = publisher.sent
        wait_for(lambda: publisher.sent >= during + 400, 30, "publishing during the outage")
    finally:
        pg_cluster.start()
    publisher.finish()
    wait_for(lambda: count(engine) >= 2000, 30, "all 2000 rows after the outage")
    assert observation_keys(engine) == _expected(20, 100, "db")
    assert bridge.metrics.db_errors.labels("unavailable")._value.get() > 0
    assert bridge.failed() is None


def test_two_bridges_both_receive_everything_and_store_each_message_once(
    broker: Any, engine: Engine, bridge_process: Callable[..., BridgeProcess]
) -> None:
    first = bridge_process("bridge-a").start()
    second = bridge_process("bridge-b").start()
    publish_all(broker.host, broker.port, _messages(40, 100))
    wait_for(lambda: count(engine) >= 4000, 60, "all 4000 rows")
    assert observation_keys(engine) == _expected(40, 100)
    stored = [
        b.metric("cultivai_bridge_messages_stored_total", 'kind="observation"')
        for b in (first, second)
    ]
    # Each bridge holds its own subscription (no shared group a device could join): both
    # receive all 4000, the database's unique keys keep one row each.
    assert sum(stored) == 4000

    def duplicates() -> float:
        return sum(
            b.metric("cultivai_bridge_duplicates_total", 'kind="observation"')
            for b in (first, second)
        )

    wait_for(lambda: duplicates() >= 4000, 60, "the other copy of each message as a duplicate")
    assert duplicates() == 4000
    assert first.terminate() == 0
    assert second.terminate() == 0


def test_a_broker_restart_keeps_the_bridge_session_and_its_queue(
    broker: Any, engine: Engine, start_bridge: Callable[..., Bridge]
) -> None:
    session = {"mqtt": {"client_id": "bridge-restart"}}
    bridge = start_bridge(**session)
    publish_all(broker.host, broker.port, _messages(5, 100, "r"))
    wait_for(lambda: count(engine) >= 500, 20, "the first 500 rows")
    bridge.stop()
    publish_all(broker.host, broker.port, _messages(5, 200, "r")[500:])
    broker.stop()
    broker.start()
    bridge = start_bridge(**session)
    wait_for(lambda: count(engine) >= 1000, 20, "the 500 queued while the bridge was away")
    broker.stop()
    broker.start()
    assert bridge.link is not None
    wait_for(lambda: bridge.link is not None and bridge.link.ready, 20, "the bridge to reconnect")
    publish_all(broker.host, broker.port, _messages(5, 300, "r")[1000:])
    wait_for(lambda: count(engine) >= 1500, 20, "500 more after the broker restart")
    assert observation_keys(engine) == _expected(5, 300, "r")
