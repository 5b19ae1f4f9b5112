"""Signing in: locked by default, wrong passwords, rate limits, logout, secrets on disk."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from edge.web.keys import PASSWORD_FILE, SESSION_KEY_FILE
from edge.web.password import hash_password
from tests.web.conftest import PASSWORD, AgentDevice, csrf_from, log_in, make_app

PAGES = ["/", "/history", "/photos", "/photos/2026-03-02", "/photo/1", "/timelapse"]
API = ["/api/v1/status", "/api/v1/observations", "/api/v1/images/1", "/readyz", "/metrics"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_redirect_to_login_when_signed_out(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login?next=")


@pytest.mark.parametrize("path", API)
def test_api_answers_401_when_signed_out(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.json == {"error": "login required"}


def test_healthz_needs_no_login(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"ok": True}


def test_login_page_and_its_stylesheet_need_no_login(client: FlaskClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    css = page.text.split('rel="stylesheet" href="', 1)[1].split('"', 1)[0]
    assert client.get(css).status_code == 200


def test_right_password_signs_in_and_returns_to_the_page_asked_for(client: FlaskClient) -> None:
    page = client.get("/login?next=/history")
    response = client.post(
        "/login",
        data={"password": PASSWORD, "csrf_token": csrf_from(page.text), "next": "/history"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/history"
    assert client.get("/history").status_code == 200


def test_wrong_password_is_refused(client: FlaskClient) -> None:
    response = log_in(client, "not-the-password")
    assert response.status_code == 401
    assert "Wrong password" in response.text
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_login_never_redirects_to_another_site(client: FlaskClient, target: str) -> None:
    page = client.get("/login")
    response = client.post(
        "/login", data={"password": PASSWORD, "csrf_token": csrf_from(page.text), "next": target}
    )
    assert response.headers["Location"] == "/"


def test_five_failures_lock_that_address_out_even_with_the_right_password(
    client: FlaskClient,
) -> None:
    for _ in range(5):
        assert log_in(client, "guess").status_code == 401
    response = log_in(client, PASSWORD)
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 300
    assert "Too many wrong passwords" in response.text


def test_a_locked_out_address_does_not_lock_out_others(app: Flask) -> None:
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "192.0.2.7"
    for _ in range(6):
        log_in(attacker, "guess")
    grower = app.test_client()
    grower.environ_base["REMOTE_ADDR"] = "192.0.2.8"
    assert log_in(grower).status_code == 303


def test_logout_ends_the_session(user: FlaskClient) -> None:
    page = user.get("/")
    response = user.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 303
    assert user.get("/").status_code == 302


def test_session_cookie_is_httponly_and_samesite_strict(client: FlaskClient) -> None:
    cookie = log_in(client).headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back


def test_behind_a_tls_proxy_the_cookie_is_secure(device: AgentDevice) -> None:
    app = make_app(device, host="127.0.0.1", behind_tls_proxy=True)
    client = app.test_client()
    cookie = log_in(client).headers["Set-Cookie"]
    assert "Secure" in cookie


def test_behind_a_tls_proxy_rate_limits_count_the_forwarded_client(device: AgentDevice) -> None:
    app = make_app(device, host="127.0.0.1", behind_tls_proxy=True)
    attacker = app.test_client()
    attacker.environ_base["HTTP_X_FORWARDED_FOR"] = "192.0.2.7"
    for _ in range(6):
        log_in(attacker, "guess")
    grower = app.test_client()
    grower.environ_base["HTTP_X_FORWARDED_FOR"] = "192.0.2.8"
    assert log_in(grower).status_code == 303


def test_first_start_generates_a_password_keeps_only_its_hash_and_logs_it_once(
    tmp_path: Path, device: AgentDevice, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "fresh"
    data_dir.mkdir()
    with caplog.at_level(logging.WARNING, logger="edge.web.keys"):
        app = make_app(device, password_hash=None, data_dir=data_dir)
    generated = [r for r in caplog.records if "password generated" in r.getMessage()]
    assert len(generated) == 1
    password = str(generated[0].args[-1])  # type: ignore[index]
    stored = data_dir / PASSWORD_FILE
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stored.read_text().startswith("$argon2id$")
    assert password not in stored.read_text()
    assert log_in(app.test_client(), password).status_code == 303

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edge.web.keys"):
        again = make_app(device, password_hash=None, data_dir=data_dir)
    assert not [r for r in caplog.records if "password generated" in r.getMessage()]
    assert log_in(again.test_client(), password).status_code == 303


def test_session_key_is_generated_once_and_private(tmp_path: Path, device: AgentDevice) -> None:
    make_app(device, data_dir=tmp_path)
    key = tmp_path / SESSION_KEY_FILE
    first = key.read_text()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    make_app(device, data_dir=tmp_path)
    assert key.read_text() == first


def test_a_new_password_signs_everyone_out(tmp_path: Path, device: AgentDevice) -> None:
    old = make_app(device, data_dir=tmp_path)
    client = old.test_client()
    log_in(client)
    new = make_app(device, data_dir=tmp_path, password_hash=hash_password("a-new-password"))
    client.application = new  # same browser, same cookie, device restarted with a new hash
    assert client.get("/").status_code == 302


def test_the_hash_command_prints_a_hash_that_verifies(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from edge.web import password

    monkeypatch.setattr(password.getpass, "getpass", lambda prompt="": "grow-room-2")
    assert password.main() == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$argon2id$")
    assert password.verify_password(printed, "grow-room-2")
