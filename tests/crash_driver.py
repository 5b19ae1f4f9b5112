"""Runs the agent loop flat out (simulated clock) until killed; used by the kill -9 test."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path

from edge.agent import Agent
from edge.clock import FakeClock
from tests.conftest import make_config


def main() -> None:
    data_dir = Path(sys.argv[1])
    config = make_config(
        data_dir,
        camera={"width": 640, "height": 480},
        schedule={"interval_s": 60},
        storage={"image_quota_mb": 1},  # small quota: pruning runs during the test too
    )
    agent = Agent(config, clock=FakeClock(datetime.now(timezone.utc))).start()
    print("ready", flush=True)
    agent.run()


if __name__ == "__main__":
    main()
