"""What the page's views share: the store, the device, the clock, the time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path

from flask import current_app

from edge.clock import Clock
from edge.metrics import AgentMetrics
from edge.store import Store
from edge.web.auth import Gate
from edge.web.device import DeviceView
from edge.web.images import ResizedCache
from edge.web.settings import WebConfig

EXTENSION = "cultivai"


@dataclass
class WebContext:
    """The parts one app instance serves from."""

    settings: WebConfig
    data_dir: Path
    store: Store
    device: DeviceView
    metrics: AgentMetrics
    clock: Clock
    tz: tzinfo | None
    gate: Gate
    resized: ResizedCache

    def now(self) -> datetime:
        """The agent's idea of now (UTC)."""
        return self.clock.now()

    def local(self, when: datetime) -> datetime:
        """`when` (naive means UTC, as SQLite returns it) in the grow room's time zone."""
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.astimezone(self.tz) if self.tz is not None else when.astimezone()

    def zone(self) -> tzinfo:
        """The time zone dates are grouped and shown in."""
        zone = self.local(self.now()).tzinfo
        assert zone is not None
        return zone


def web() -> WebContext:
    """The context of the app handling this request."""
    ctx: WebContext = current_app.extensions[EXTENSION]
    return ctx
