"""The status page's "Capture empty scene": CSRF-protected, says when, says when it failed."""

from __future__ import annotations

from typing import Any

import pytest

from edge.errors import CameraError
from tests.web.conftest import AgentDevice, csrf_from, log_in, make_app


def test_the_page_captures_the_empty_scene_and_says_when(fresh_device: AgentDevice) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    page = client.get("/").text
    assert "Capture empty scene" in page and "not taken" in page
    response = client.post("/background/empty", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303 and "empty=taken" in response.headers["Location"]
    taken = fresh_device.agent.status()["empty_scene_at"]
    assert taken is not None
    shown = client.get(response.headers["Location"]).text
    assert "Empty scene captured" in shown
    assert f"taken {taken:%Y-%m-%d %H:%M}" in shown


@pytest.mark.parametrize("token", [None, "forged-token"])
def test_the_page_refuses_an_empty_scene_without_the_sessions_token(
    fresh_device: AgentDevice, token: str | None
) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    client.get("/")
    data = {} if token is None else {"csrf_token": token}
    assert client.post("/background/empty", data=data).status_code == 400
    assert fresh_device.agent.status()["empty_scene_at"] is None


def test_the_page_says_when_the_camera_failed(fresh_device: AgentDevice) -> None:
    class Broken:
        name = "broken"

        def capture(self) -> Any:
            raise CameraError("sensor unplugged")

        def close(self) -> None:
            pass

    agent = fresh_device.agent
    working, agent.camera = agent.camera, Broken()  # type: ignore[assignment]
    try:
        client = make_app(fresh_device).test_client()
        log_in(client)
        page = client.get("/").text
        response = client.post("/background/empty", data={"csrf_token": csrf_from(page)})
        assert "empty=failed" in response.headers["Location"]
        assert "could not be photographed" in client.get(response.headers["Location"]).text
        assert agent.status()["empty_scene_at"] is None
    finally:
        agent.camera = working
