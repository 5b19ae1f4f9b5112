"""Server-side sessions: logout and a new password revoke them; the login limit holds under load."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.web.password import hash_password
from edge.web.ratelimit import LoginLimiter
from tests.web.conftest import AgentDevice, csrf_from, log_in, make_app

COOKIE = "cultivai_session"


@pytest.fixture
def fresh_app(fresh_device: AgentDevice) -> Flask:
    return make_app(fresh_device)


def _copy_cookie(source: FlaskClient, target: FlaskClient) -> None:
    cookie = source.get_cookie(COOKIE)
    assert cookie is not None
    target.set_cookie(COOKIE, cookie.value)


def test_a_cookie_captured_before_logout_opens_nothing_after_it(fresh_app: Flask) -> None:
    user = fresh_app.test_client()
    assert log_in(user).status_code == 303
    thief = fresh_app.test_client()
    _copy_cookie(user, thief)
    assert thief.get("/").status_code == 200  # the stolen cookie works while signed in
    page = user.get("/")
    assert user.post("/logout", data={"csrf_token": csrf_from(page.text)}).status_code == 303
    assert thief.get("/").status_code == 302
    assert thief.get("/api/v1/status").status_code == 401


def test_a_new_password_revokes_every_session(fresh_device: AgentDevice) -> None:
    app = make_app(fresh_device)
    user = app.test_client()
    assert log_in(user).status_code == 303
    assert fresh_device.agent.store is not None
    changed = make_app(fresh_device, password_hash=hash_password("a-new-password-2026"))
    again = changed.test_client()
    _copy_cookie(user, again)
    assert again.get("/").status_code == 302
    assert len(changed.extensions["cultivai"].gate.sessions.active()) == 0


def test_the_sessions_page_lists_browsers_and_signs_one_out(fresh_app: Flask) -> None:
    phone = fresh_app.test_client()
    phone.environ_base["HTTP_USER_AGENT"] = "PhoneBrowser/1"
    laptop = fresh_app.test_client()
    laptop.environ_base["HTTP_USER_AGENT"] = "LaptopBrowser/2"
    assert log_in(phone).status_code == 303
    assert log_in(laptop).status_code == 303
    page = laptop.get("/sessions")
    assert page.status_code == 200
    assert "PhoneBrowser/1" in page.text and "LaptopBrowser/2 <strong>(this browser)" in page.text
    active = fresh_app.extensions["cultivai"].gate.sessions.active()
    (phone_ref,) = [s.ref for s in active if s.user_agent == "PhoneBrowser/1"]
    revoked = laptop.post(
        f"/sessions/{phone_ref}/revoke", data={"csrf_token": csrf_from(page.text)}
    )
    assert revoked.status_code == 303
    assert phone.get("/").status_code == 302
    assert laptop.get("/").status_code == 200
    assert (
        laptop.post(
            "/sessions/zzzzzzzzzzzz/revoke", data={"csrf_token": csrf_from(page.text)}
        ).status_code
        == 404
    )


def test_parallel_guesses_are_counted_before_they_are_checked(fresh_app: Flask) -> None:
    clients = [fresh_app.test_client() for _ in range(16)]
    tokens = [csrf_from(c.get("/login").text) for c in clients]
    start = threading.Barrier(len(clients))
    codes: list[int] = []

    def guess(client: FlaskClient, token: str) -> None:
        start.wait()
        data: dict[str, Any] = {"password": "guess", "csrf_token": token, "next": "/"}
        codes.append(client.post("/login", data=data).status_code)

    threads = [
        threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(codes) == [401] * 5 + [429] * 11  # limit 5: exactly 5 were checked


def test_many_addresses_together_hit_the_global_limit(fresh_app: Flask) -> None:
    checked = 0
    for n in range(20):
        attacker = fresh_app.test_client()
        attacker.environ_base["REMOTE_ADDR"] = f"192.0.2.{n + 1}"
        for _ in range(5):
            checked += log_in(attacker, "guess").status_code == 401
    assert checked == 20  # 4 addresses' worth, not 20 x 5 = 100
    late = fresh_app.test_client()
    late.environ_base["REMOTE_ADDR"] = "198.51.100.9"
    response = log_in(late, "guess")
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0


def test_the_global_pause_doubles_each_time_it_trips_and_resets_on_success() -> None:
    now = [1000.0]
    limiter = LoginLimiter(5, 300, monotonic=lambda: now[0], global_attempts=4)
    pauses = []
    for round_ in range(3):
        for n in range(4):
            assert limiter.begin(f"10.0.{round_}.{n}") == 0
        pauses.append(limiter.retry_after("10.9.9.9"))
        now[0] += pauses[-1] + 1
    assert pauses == [300, 600, 1200]
    limiter.succeeded("10.0.2.3")
    for n in range(4):
        limiter.begin(f"10.1.0.{n}")
    assert limiter.retry_after("10.9.9.9") == 300
