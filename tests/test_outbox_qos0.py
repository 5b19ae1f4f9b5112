"""A QoS 0 outbox message paho held unsent when the link dropped is sent after reconnecting.

paho resends unacknowledged QoS 1 messages after a reconnect but forgets QoS 0 ones it
had not written yet. Through a proxy that stalls (the device's socket buffers fill
behind large messages, so the QoS 0 one stays in paho's queue) and then cuts the link,
a real agent must hand that message out again on the next connection, in order.
"""

from __future__ import annotations

from typing import Any

from edge.agent import Agent
from edge.clock import FakeClock
from tests.conftest import make_config
from tests.mqtt_client import Recorder
from tests.tcp_proxy import StallingProxy

BIG = 8 * 2**20  # several of these outgrow the loopback socket buffers on both sides
DEVICE_TOPIC = "cultivai/v1/test-cam"


def _wait(condition: Any, timeout: float = 30.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_qos0_message_paho_dropped_unsent_goes_out_after_the_reconnect(
    tmp_path: Any, broker: Any, clock: FakeClock
) -> None:
    proxy = StallingProxy(broker.port)
    recorder = Recorder(broker.host, broker.port, [f"{DEVICE_TOPIC}/probe/#"])
    cfg = make_config(
        tmp_path / "data",
        mqtt={
            "enabled": True,
            "host": proxy.host,
            "port": proxy.port,
            "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5,
        },
    )
    agent = Agent(cfg, clock=clock).start()
    try:
        link = agent.link
        assert link is not None
        assert _wait(lambda: link.connected)
        proxy.stall()
        for i in range(4):
            agent.store.enqueue(f"{DEVICE_TOPIC}/probe/big", bytes([i]) * BIG, qos=1)
        agent.store.enqueue(f"{DEVICE_TOPIC}/probe/small", b"qos0 after the big ones", qos=0)
        link.notify()

        def qos0_held_unsent() -> bool:
            return any(h.qos == 0 and not h.info.is_published() for h in link._inflight.values())

        assert _wait(qos0_held_unsent), "the QoS 0 message never sat unsent in paho's queue"
        connects = link.connects
        proxy.cut()
        assert _wait(lambda: link.connects > connects), "the agent did not reconnect"

        assert recorder.wait_for(lambda: bool(recorder.on("/probe/small")), timeout=60)
        assert recorder.on("/probe/small")[0].payload == b"qos0 after the big ones"
        assert _wait(lambda: agent.store.stats().outbox_depth == 0, timeout=60)
        big = recorder.on("/probe/big")
        assert sorted({m.payload[0] for m in big}) == [0, 1, 2, 3]
    finally:
        agent.close()
        recorder.close()
        proxy.close()
