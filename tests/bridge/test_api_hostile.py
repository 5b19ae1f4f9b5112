"""Hostile query and path values on the fleet API, against the real PostgreSQL: 400 or 404."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from cloud_bridge.api import create_app
from cloud_bridge.guard import RateLimiter
from cloud_bridge.queries import FleetReader
from tests.bridge.test_api import AUTH, TOKEN, _populate


@pytest.fixture
def client(engine: Engine) -> Iterator[FlaskClient]:
    _populate(engine)
    checks = {"database": lambda: None, "broker": lambda: None}
    app = create_app(FleetReader(engine), checks, CollectorRegistry(), TOKEN, RateLimiter(1000))
    with app.test_client() as c:
        yield c


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/devices/cam-1/observations?since=9999-12-31T23:59:59-23:59", 400),
        ("/api/v1/devices/cam-1/observations?since=0001-01-01T00:00:00%2B23:59", 400),
        ("/api/v1/alerts?since=9999-12-31T23:59:59-23:59", 400),
        ("/api/v1/alerts?since=2026-01-01T00:00:00%00Z", 400),
        ("/api/v1/devices?room=%00", 400),
        ("/api/v1/devices?site=a%00b", 400),
        ("/api/v1/alerts?room=%00", 400),
        ("/api/v1/alerts?device_id=cam%00", 400),
        ("/api/v1/devices/x%00", 404),
        ("/api/v1/devices/x%00/observations", 404),
        ("/api/v1/devices/" + "x" * 5000, 404),
    ],
)
def test_hostile_values_are_a_clear_400_or_404(client: FlaskClient, path: str, status: int) -> None:
    response = client.get(path, headers=AUTH)
    assert response.status_code == status, (path, response.status_code, response.data[:200])
    assert response.json is not None and response.json["error"]
    assert "\x00" not in response.json["error"]
