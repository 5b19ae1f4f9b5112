"""Security headers on every response: pages, API, photos, static files, errors."""

from __future__ import annotations

import logging

import pytest
from flask.testing import FlaskClient

from edge.web.device import DeviceStatus
from tests.web.conftest import AgentDevice, log_in, make_app

EXPECTED = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
SIGNED_IN = [
    "/",
    "/history",
    "/photos",
    "/photo/2",
    "/timelapse",
    "/api/v1/status",
    "/api/v1/images/2",
    "/api/v1/images/2?size=thumb",
    "/metrics",
    "/readyz",
    "/no-such-page",
    "/api/v1/images/999999",
]
SIGNED_OUT = ["/login", "/healthz", "/", "/api/v1/status", "/static/style.css"]


def assert_locked_down(headers: object) -> None:
    h = dict(headers)  # type: ignore[call-overload]
    for name, value in EXPECTED.items():
        assert h.get(name) == value, name
    csp = h["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert "Strict-Transport-Security" not in h


@pytest.mark.parametrize("path", SIGNED_IN)
def test_signed_in_responses_carry_security_headers(user: FlaskClient, path: str) -> None:
    assert_locked_down(user.get(path).headers)


@pytest.mark.parametrize("path", SIGNED_OUT)
def test_signed_out_responses_carry_security_headers(client: FlaskClient, path: str) -> None:
    assert_locked_down(client.get(path).headers)


def test_method_not_allowed_carries_security_headers(user: FlaskClient) -> None:
    response = user.put("/healthz")
    assert response.status_code in (400, 405)
    assert_locked_down(response.headers)


def test_pages_are_not_cached_but_photos_are_kept_privately(user: FlaskClient) -> None:
    assert user.get("/").headers["Cache-Control"] == "no-store"
    photo = user.get("/api/v1/images/2").headers["Cache-Control"]
    assert photo.startswith("private") and "immutable" in photo


def test_hsts_is_sent_behind_a_tls_proxy(device: AgentDevice) -> None:
    app = make_app(device, host="127.0.0.1", behind_tls_proxy=True)
    response = app.test_client().get("/healthz")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")


class BrokenDevice:
    """A device whose status cannot be read, to make the status page fail."""

    def __init__(self, inner: AgentDevice) -> None:
        self.inner = inner
        self.agent = inner.agent
        self.clock = inner.clock

    def status(self) -> DeviceStatus:
        raise RuntimeError("status backend exploded: secret detail")

    def request_capture(self) -> None:
        pass


def test_an_error_renders_a_friendly_page_with_headers_and_logs_the_detail(
    device: AgentDevice, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(BrokenDevice(device))  # type: ignore[arg-type]
    client = app.test_client()
    log_in(client)
    with caplog.at_level(logging.ERROR, logger="edge.web.app"):
        response = client.get("/")
    assert response.status_code == 500
    assert "Something went wrong" in response.text
    assert "secret detail" not in response.text
    assert_locked_down(response.headers)
    assert any(r.exc_info and "secret detail" in str(r.exc_info[1]) for r in caplog.records)


def test_a_missing_page_renders_a_friendly_404(user: FlaskClient) -> None:
    response = user.get("/no-such-page")
    assert response.status_code == 404
    assert "Not found" in response.text
    assert response.mimetype == "text/html"
