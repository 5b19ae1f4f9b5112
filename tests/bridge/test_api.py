"""The fleet read API: token, rate limit, headers, and what each view returns."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from werkzeug.test import TestResponse

from cloud_bridge.api import create_app
from cloud_bridge.decode import Limits, decode
from cloud_bridge.guard import RateLimiter
from cloud_bridge.queries import FleetReader
from cloud_bridge.store import Envelope, FleetStore
from tests.bridge.factory import alert_message, observation_message, status_message

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _populate(engine: Engine) -> None:
    messages = [
        status_message("cam-1", "online"),
        status_message("cam-2", "offline"),
        *(observation_message("cam-1", s, site="farm1", room="room1") for s in range(1, 6)),
        observation_message("cam-2", 1, site="farm1", room="room2", label="yellowing"),
        alert_message("cam-1", 1, "raised", seq=2),
        alert_message("cam-1", 1, "cleared", seq=4),
        alert_message("cam-2", 1, "raised", seq=1),
    ]
    now = datetime.now(timezone.utc)
    limits = Limits(262_144, 65_536)
    batch = [Envelope(t, p, now, decode(t, p, limits)) for t, p in messages]
    FleetStore(engine, 1024).write(batch)


def _json(response: TestResponse) -> Any:
    assert response.json is not None, response.data
    return response.json


@pytest.fixture
def client(engine: Engine) -> Iterator[FlaskClient]:
    _populate(engine)
    checks = {"database": lambda: None, "broker": lambda: None}
    app = create_app(FleetReader(engine), checks, CollectorRegistry(), TOKEN, RateLimiter(1000))
    with app.test_client() as c:
        yield c


def test_api_refuses_requests_without_the_token(client: FlaskClient) -> None:
    assert client.get("/api/v1/devices").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert client.get("/api/v1/devices", headers=wrong).status_code == 401
    assert client.get("/metrics").status_code == 401


def test_health_checks_need_no_token(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_readyz_names_what_is_not_ready(engine: Engine) -> None:
    checks = {"database": lambda: None, "broker": lambda: "not connected and subscribed"}
    app = create_app(FleetReader(engine), checks, CollectorRegistry(), TOKEN, RateLimiter(10))
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert _json(response)["checks"] == {"database": "ok", "broker": "not connected and subscribed"}


def test_every_response_carries_security_headers(client: FlaskClient) -> None:
    for response in (client.get("/healthz"), client.get("/api/v1/devices")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


def test_the_api_is_read_only(client: FlaskClient) -> None:
    assert client.post("/api/v1/devices", headers=AUTH).status_code == 405
    assert client.delete("/api/v1/devices/cam-1", headers=AUTH).status_code == 405


def test_requests_beyond_the_rate_limit_get_429(engine: Engine) -> None:
    app = create_app(FleetReader(engine), {}, CollectorRegistry(), TOKEN, RateLimiter(3))
    c = app.test_client()
    codes = [c.get("/api/v1/devices", headers=AUTH).status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    limited = c.get("/api/v1/devices", headers=AUTH)
    assert int(limited.headers["Retry-After"]) >= 1


def test_without_a_token_file_the_api_is_disabled(engine: Engine) -> None:
    app = create_app(FleetReader(engine), {}, CollectorRegistry(), None, RateLimiter(10))
    response = app.test_client().get("/api/v1/devices", headers=AUTH)
    assert response.status_code == 403 and "token_file" in _json(response)["error"]


def test_devices_lists_each_device_with_presence(client: FlaskClient) -> None:
    devices = _json(client.get("/api/v1/devices", headers=AUTH))["devices"]
    assert [(d["id"], d["online"], d["room"], d["last_seq"]) for d in devices] == [
        ("cam-1", True, "room1", 5),
        ("cam-2", False, "room2", 1),
    ]
    online = _json(client.get("/api/v1/devices?online=true", headers=AUTH))["devices"]
    assert [d["id"] for d in online] == ["cam-1"]


def test_observations_page_through_a_device_history(client: FlaskClient) -> None:
    first = _json(client.get("/api/v1/devices/cam-1/observations?limit=3", headers=AUTH))
    assert [o["seq"] for o in first["observations"]] == [1, 2, 3]
    assert first["next_after_seq"] == 3
    rest = _json(client.get("/api/v1/devices/cam-1/observations?after_seq=3", headers=AUTH))
    assert [o["seq"] for o in rest["observations"]] == [4, 5]
    assert rest["next_after_seq"] is None
    assert "canopy" in rest["observations"][0] and "stored_at" in rest["observations"][0]


def test_observations_since_filters_by_capture_time(client: FlaskClient) -> None:
    url = "/api/v1/devices/cam-1/observations?since=2026-03-02T09:00:00Z"
    assert [o["seq"] for o in _json(client.get(url, headers=AUTH))["observations"]] == [4, 5]


@pytest.mark.parametrize(
    "query", ["since=yesterday", "since=2026-03-02T09:00:00", "limit=0", "limit=x"]
)
def test_bad_query_parameters_get_400_naming_the_parameter(client: FlaskClient, query: str) -> None:
    response = client.get(f"/api/v1/devices/cam-1/observations?{query}", headers=AUTH)
    assert response.status_code == 400
    assert _json(response)["error"].split(":")[0] in query


def test_an_unknown_device_is_404(client: FlaskClient) -> None:
    response = client.get("/api/v1/devices/nope/observations", headers=AUTH)
    assert response.status_code == 404


def test_open_alerts_are_raised_and_not_cleared(client: FlaskClient) -> None:
    alerts = _json(client.get("/api/v1/alerts?state=open", headers=AUTH))["alerts"]
    assert [(a["device_id"], a["alert_id"], a["state"]) for a in alerts] == [("cam-2", 1, "raised")]
    everything = _json(client.get("/api/v1/alerts", headers=AUTH))["alerts"]
    assert len(everything) == 3


def test_fleet_summary_counts_per_site_and_room(client: FlaskClient) -> None:
    rooms = _json(client.get("/api/v1/fleet/summary", headers=AUTH))["rooms"]
    assert [(r["site"], r["room"], r["devices"], r["online"], r["offline"]) for r in rooms] == [
        ("farm1", "room1", 1, 1, 0),
        ("farm1", "room2", 1, 0, 1),
    ]
    assert rooms[0]["health"] == {"healthy": 1}
    assert rooms[1]["health"] == {"yellowing": 1}
    assert [r["open_alerts"] for r in rooms] == [0, 1]


def test_metrics_are_served_with_the_token(client: FlaskClient) -> None:
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"


def test_the_api_database_session_refuses_writes(engine: Engine) -> None:
    reader = FleetReader(engine)
    with reader.session() as session, pytest.raises(DBAPIError, match="read-only"):
        session.execute(text("DELETE FROM observations"))
