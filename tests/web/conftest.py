"""Fixtures for the status page: a real agent behind the page, apps, logged-in clients."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.agent import Agent
from edge.clock import FakeClock
from edge.web.app import create_app
from edge.web.device import DeviceStatus
from edge.web.password import hash_password
from edge.web.settings import WebConfig
from tests.conftest import make_config

PASSWORD = "correct-horse-battery"
START = datetime(2026, 3, 2, 6, 0, tzinfo=timezone.utc)
STEP_S = 3 * 3600
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class HeldClock(FakeClock):
    """A FakeClock that, once held, waits to be woken instead of jumping to the next slot.

    Seeding runs unheld (a simulated day in milliseconds); then the agent loop sits
    idle until "capture now" wakes it, as a real device does between slots.
    """

    held = False

    def wait_until(self, when: datetime, wake: threading.Event) -> bool:
        """Jump (unheld) or block until `wake` is set (held)."""
        if not self.held:
            return super().wait_until(when, wake)
        wake.wait()
        return True


@dataclass
class AgentDevice:
    """The page's DeviceView over a real Agent running its capture loop in a thread."""

    agent: Agent
    clock: HeldClock
    captures_requested: int = 0
    _thread: threading.Thread | None = None

    def status(self) -> DeviceStatus:
        """The agent's state, as the web page reads it."""
        return self.agent.status()

    def request_capture(self) -> None:
        """Move time to the next slot and wake the agent's loop."""
        self.captures_requested += 1
        self.clock.advance(STEP_S)
        self.agent.request_capture()

    def reset_baseline(self) -> None:
        """A new grow: the agent forgets its baseline."""
        self.agent.reset_baseline()

    def capture_empty_scene(self) -> datetime:
        """The agent photographs the empty scene."""
        return self.agent.capture_empty_scene()

    def run_in_background(self) -> None:
        """Hold the clock and start the agent's loop."""
        self.clock.held = True
        self._thread = threading.Thread(target=self.agent.run, name="agent", daemon=True)
        self._thread.start()

    def wait_for_seq(self, seq: int, timeout_s: float = 10.0) -> None:
        """Block until the store holds `seq` (bounded)."""
        deadline = time.monotonic() + timeout_s
        while self.agent.store.stats().last_seq < seq:
            if time.monotonic() > deadline:
                raise AssertionError(f"no observation #{seq} within {timeout_s} s")
            time.sleep(0.02)

    def close(self) -> None:
        """Stop the loop and release the agent."""
        self.agent.stop()
        if self._thread is not None:
            self._thread.join(10)
        self.agent.close()


def start_device(data_dir: Path, captures: int, **sections: Any) -> AgentDevice:
    """A real agent on a synthetic canopy, seeded with `captures` observations."""
    camera = {
        "width": 640,
        "height": 480,
        "start_day": 8,
        "days_per_capture": 1.5,
        "yellowing_onset_day": 16,
        **sections.pop("camera", {}),
    }
    cfg = make_config(
        data_dir,
        camera=camera,
        schedule={"interval_s": STEP_S, "timezone": "UTC"},
        **sections,
    )
    clock = HeldClock(START)
    agent = Agent(cfg, clock=clock).start()
    agent.run(max_captures=captures)
    device = AgentDevice(agent, clock)
    device.run_in_background()
    return device


def make_app(device: AgentDevice, data_dir: Path | None = None, **settings: Any) -> Flask:
    """The page's app over `device`, with the test password unless settings say otherwise."""
    settings.setdefault("password_hash", password_hash_for_tests())
    app = create_app(
        WebConfig(**settings),
        data_dir or device.agent.config.storage.dir,
        device.agent.store,
        device,
        device.agent.metrics,
        clock=device.clock,
        timezone="UTC",
    )
    app.testing = False  # errors go through the app's own handlers, as on a device
    return app


_HASH: list[str] = []


def password_hash_for_tests() -> str:
    """One argon2 hash of PASSWORD per test run (hashing is slow by design)."""
    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    return _HASH[0]


def csrf_from(html: str) -> str:
    """The CSRF token a page's form carries."""
    found = _CSRF.search(html)
    assert found, "page has no CSRF token"
    return found.group(1)


def body(response: Any) -> Any:
    """A response's JSON, untyped (tests index into it freely)."""
    return response.get_json()


def log_in(client: FlaskClient, password: str = PASSWORD) -> Any:
    """Sign in through the login form, as a browser does."""
    page = client.get("/login")
    return client.post(
        "/login", data={"password": password, "csrf_token": csrf_from(page.text), "next": "/"}
    )


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentDevice]:
    """A real agent with a dozen observations over a day and a half; shared per module."""
    instance = start_device(tmp_path_factory.mktemp("web") / "data", captures=12)
    yield instance
    instance.close()


@pytest.fixture
def fresh_device(tmp_path: Path) -> Iterator[AgentDevice]:
    """A real agent with one observation, for tests that capture or change state."""
    instance = start_device(tmp_path / "data", captures=1)
    yield instance
    instance.close()


@pytest.fixture
def app(device: AgentDevice) -> Flask:
    """The page's app over the shared agent (fresh rate limits per test)."""
    return make_app(device)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A browser that has not signed in."""
    return app.test_client()


@pytest.fixture
def user(client: FlaskClient) -> FlaskClient:
    """A browser signed in with the right password."""
    response = log_in(client)
    assert response.status_code == 303, response.text
    return client
