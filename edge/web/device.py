"""What the page needs from the running agent: its state and a capture trigger.

Measurements, photos, open alerts and the outbox depth come from the Store, and
free disk space from the data folder; only what neither knows (uptime, broker,
model, camera, CPU temperature) comes through `DeviceView`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, TypedDict


class DeviceStatus(TypedDict, total=False):
    """The agent's state as the page shows it; absent keys are shown as unknown."""

    device_id: str
    site: str
    room: str
    firmware: str
    started_at: datetime
    cpu_temp_c: float | None
    broker_connected: bool | None  # None: MQTT is off
    model_name: str | None
    model_version: str | None
    model_backend: str | None
    model_error: str | None
    camera_open: bool
    last_capture_at: datetime | None
    last_error: str | None
    captures_ok: int
    captures_failed: int
    skipped_dark: int
    workers_up: bool  # False while a crashed worker thread waits to be restarted
    worker_problems: list[str]
    empty_scene_at: datetime | None  # when the empty scene in use was photographed


class DeviceView(Protocol):
    """The running agent, as the page sees it."""

    def status(self) -> DeviceStatus:
        """The agent's current state."""
        ...

    def request_capture(self) -> None:
        """Take a photo as soon as possible (returns at once)."""
        ...

    def reset_baseline(self) -> None:
        """A new grow starts: forget the grow baseline."""
        ...

    def capture_empty_scene(self) -> datetime:
        """Photograph the scene, plants out of view, as the background; when it was taken.

        Raises CultivaiError (the camera failed).
        """
        ...
