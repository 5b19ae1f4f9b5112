"""Runs the agent with a camera that hangs on demand; used by the systemd watchdog tests.

The camera is the synthetic one until a file named `hang` appears in the data folder;
from then on a capture blocks for ever, as a wedged V4L2 read or a stuck I2C bus would.
"""

from __future__ import annotations

import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from edge.agent import Agent
from edge.camera.base import Frame
from edge.camera.synthetic import SyntheticCamera, SyntheticCameraSettings
from edge.clock import SystemClock
from edge.systemd import Notifier
from tests.conftest import make_config


class HangingCamera:
    """The synthetic camera, except that it blocks once `trigger` exists."""

    name = "synthetic"

    def __init__(self, trigger: Path) -> None:
        self._inner = SyntheticCamera(SyntheticCameraSettings(width=160, height=120), SystemClock())
        self._trigger = trigger
        self._never = threading.Event()

    def capture(self) -> Frame:
        if self._trigger.exists():
            print("camera hung", flush=True)
            self._never.wait()
        return self._inner.capture()

    def close(self) -> None:
        self._inner.close()


def main() -> None:
    data_dir = Path(sys.argv[1])
    config = make_config(data_dir, schedule={"interval_s": 1}, web={"enabled": False})
    agent = Agent(
        config, camera=HangingCamera(data_dir / "hang"), notifier=Notifier.from_environ()
    ).start()
    print(f"started {datetime.now(timezone.utc).isoformat()}", flush=True)
    agent.run()


if __name__ == "__main__":
    main()
