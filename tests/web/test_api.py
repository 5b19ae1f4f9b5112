"""The JSON API, photos, readiness and Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from flask.testing import FlaskClient

from tests.web.conftest import AgentDevice, body, log_in, make_app


def test_status_reports_device_health_and_the_latest_observation(
    user: FlaskClient, device: AgentDevice
) -> None:
    status = body(user.get("/api/v1/status"))
    latest = device.agent.store.recent(1)[0]
    assert status["device"]["id"] == "test-cam"
    assert status["latest"]["seq"] == latest.seq
    assert status["latest"]["canopy"]["cover_pct"] == latest.canopy.cover_pct
    assert status["counts"]["observations"] == device.agent.store.stats().observations
    assert status["disk"]["free_bytes"] > 0
    assert status["cpu_temp_c"] == device.status().get("cpu_temp_c")
    assert status["broker_connected"] is None
    assert status["model"]["error"] == "model disabled in config"
    assert status["last_capture_at"].endswith("+00:00")
    assert [a["raised_seq"] for a in status["alerts"]] == [
        a.raised_seq for a in reversed(device.agent.store.open_alerts())
    ]


def test_observations_default_to_the_latest_in_seq_order(user: FlaskClient) -> None:
    seqs = [o["seq"] for o in body(user.get("/api/v1/observations?limit=3"))["observations"]]
    last = body(user.get("/api/v1/status"))["latest"]["seq"]
    assert seqs == [last - 2, last - 1, last]


def test_observations_since_a_time_page_forward_by_seq(user: FlaskClient) -> None:
    first = body(user.get("/api/v1/observations?since=2026-03-03T00:00:00Z&limit=2"))
    assert [o["seq"] for o in first["observations"]] == [6, 7]
    assert all(o["captured_at"] >= "2026-03-03" for o in first["observations"])
    after = first["next_after_seq"]
    more = body(user.get(f"/api/v1/observations?after_seq={after}&limit=2"))
    assert [o["seq"] for o in more["observations"]] == [8, 9]


@pytest.mark.parametrize(
    "query",
    ["since=yesterday", "since=2026-03-03T00:00:00", "limit=0", "limit=5000", "after_seq=x"],
)
def test_bad_observation_queries_are_400_with_a_reason(user: FlaskClient, query: str) -> None:
    response = user.get(f"/api/v1/observations?{query}")
    assert response.status_code == 400
    assert body(response)["error"]


def test_images_serve_the_photo_its_overlay_and_smaller_copies(
    user: FlaskClient, device: AgentDevice
) -> None:
    photo = user.get("/api/v1/images/3")
    assert photo.status_code == 200 and photo.mimetype == "image/jpeg"
    assert photo.data == device.agent.store.image_path(3).read_bytes()  # type: ignore[union-attr]
    overlay = user.get("/api/v1/images/3?overlay=1")
    assert overlay.status_code == 200 and overlay.data != photo.data
    thumb = user.get("/api/v1/images/3?size=thumb")
    pixels = cv2.imdecode(np.frombuffer(thumb.data, np.uint8), cv2.IMREAD_COLOR)
    assert pixels is not None and max(pixels.shape[:2]) <= 320


def test_a_missing_image_is_404_not_500(user: FlaskClient) -> None:
    assert user.get("/api/v1/images/999999").status_code == 404
    assert user.get("/api/v1/images/3?size=huge").status_code == 404


def test_an_image_pruned_from_disk_is_404(fresh_device: AgentDevice) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    path = fresh_device.agent.store.image_path(1)
    assert path is not None
    Path(path).unlink()
    assert client.get("/api/v1/images/1").status_code == 404
    assert client.get("/api/v1/images/1?size=medium").status_code == 404


def test_readyz_reports_the_database_and_camera(user: FlaskClient) -> None:
    response = user.get("/readyz")
    assert response.status_code == 200
    assert body(response) == {
        "ready": True,
        "checks": {"database": "ok", "camera": "ok", "workers": "ok"},
        "problems": [],
    }


def test_metrics_expose_the_agents_registry_to_a_signed_in_user(user: FlaskClient) -> None:
    response = user.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.text
    for name in ("cultivai_capture_seconds", "cultivai_outbox_depth", "cultivai_model_info"):
        assert name in text
    assert 'cultivai_captures_total{result="ok"} 12.0' in text


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.token"
    path.write_text("s3cret-scrape-token-0123456789\n")
    return path


def test_metrics_with_a_token_file_accept_the_bearer_token(
    device: AgentDevice, token_file: Path
) -> None:
    client = make_app(device, metrics_token_file=token_file).test_client()
    headers = {"Authorization": "Bearer s3cret-scrape-token-0123456789"}
    assert client.get("/metrics", headers=headers).status_code == 200
    assert client.get("/readyz", headers=headers).status_code == 200


def test_metrics_refuse_a_wrong_or_missing_token(device: AgentDevice, token_file: Path) -> None:
    client = make_app(device, metrics_token_file=token_file).test_client()
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics").status_code == 401


def test_the_metrics_token_opens_nothing_else(device: AgentDevice, token_file: Path) -> None:
    client = make_app(device, metrics_token_file=token_file).test_client()
    headers = {"Authorization": "Bearer s3cret-scrape-token-0123456789"}
    assert client.get("/api/v1/status", headers=headers).status_code == 401
