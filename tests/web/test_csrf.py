"""Every form post needs this session's CSRF token."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import AgentDevice, csrf_from


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_capture_without_the_sessions_token_is_refused(
    user: FlaskClient, device: AgentDevice, token: str | None
) -> None:
    before = device.captures_requested
    data = {} if token is None else {"csrf_token": token}
    response = user.post("/capture", data=data)
    assert response.status_code == 400
    assert "Form expired" in response.text
    assert device.captures_requested == before


def test_login_without_a_token_is_refused(client: FlaskClient) -> None:
    client.get("/login")
    response = client.post("/login", data={"password": "anything"})
    assert response.status_code == 400


def test_logout_without_a_token_keeps_the_session(user: FlaskClient) -> None:
    assert user.post("/logout").status_code == 400
    assert user.get("/").status_code == 200


def test_the_token_may_come_in_a_header_for_scripts(user: FlaskClient, device: AgentDevice) -> None:
    token = csrf_from(user.get("/").text)
    before = device.captures_requested
    response = user.post("/capture", headers={"X-CSRF-Token": token})
    assert response.status_code == 303
    assert device.captures_requested == before + 1


def test_a_token_from_another_session_is_refused(client: FlaskClient, user: FlaskClient) -> None:
    other = client.application.test_client()
    foreign = csrf_from(other.get("/login").text)
    assert user.post("/capture", data={"csrf_token": foreign}).status_code == 400
