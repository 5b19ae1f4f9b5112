"""Out-of-range route and query parameters get a 400 or 404, never a 500."""

from __future__ import annotations

import time

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import PASSWORD, AgentDevice, csrf_from, log_in, make_app

HUGE = "1" * 23


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/images/9223372036854775808",
        f"/api/v1/images/{HUGE}",
        f"/photo/{HUGE}",
        "/photo/9223372036854775808",
        f"/api/v1/observations?after_seq={HUGE}",
        f"/api/v1/observations?after_seq=-{HUGE}",
        f"/api/v1/observations?limit={HUGE}",
        "/api/v1/observations?since=9999-12-31T23:59:59-23:59",
        "/api/v1/observations?since=0001-01-01T00:00:00%2B23:59",
        "/api/v1/observations?since=2026-01-01T00:00:00%00Z",
        f"/?after={HUGE}&t=1e308",
        "/?after=1&t=nan",
        f"/timelapse?frame={HUGE}",
        "/photos/9999-99-99",
        "/photos/2026-03-02%00",
    ],
)
def test_extreme_parameters_are_400_or_404(user: FlaskClient, path: str) -> None:
    response = user.get(path)
    assert response.status_code in (200, 400, 404), (path, response.status_code)
    if path.startswith(("/api/v1/images", "/photo/")):
        assert response.status_code == 404
    if "after_seq" in path or "since" in path or "limit=" in path:
        assert response.status_code == 400
        assert response.json is not None and response.json["error"]


@pytest.mark.parametrize(
    "target", ["/\r\nSet-Cookie: x=1", "/history\r\nLocation: //evil.example", "/%0d%0a", "/\x00"]
)
def test_a_next_with_control_characters_falls_back_to_the_status_page(
    client: FlaskClient, target: str
) -> None:
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"password": PASSWORD, "next": target, "csrf_token": csrf_from(page.text)},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert all("\r" not in v and "\n" not in v for _, v in response.headers.items())


def test_readyz_reports_a_dead_worker_until_it_is_back(fresh_device: AgentDevice) -> None:
    client = make_app(fresh_device).test_client()
    assert log_in(client).status_code == 303

    def loop() -> None:
        raise RuntimeError("probe broke")

    # A long back-off keeps the worker down while readiness is read.
    fresh_device.agent.supervisor._first_backoff_s = 3600
    fresh_device.agent.supervisor.start("probe", loop)
    deadline = time.monotonic() + 10
    while fresh_device.agent.supervisor.all_up():  # until the supervisor has seen it die
        assert time.monotonic() < deadline, "the probe worker never died"
        time.sleep(0.01)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json is not None and response.json["checks"]["workers"] == "error"
    assert "probe worker is down (last error: RuntimeError: probe broke)" in str(
        response.json["problems"]
    )
