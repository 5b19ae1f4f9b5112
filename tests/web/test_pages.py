"""The grower's pages, rendered from a real agent's store."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import cv2
from flask.testing import FlaskClient
from markupsafe import escape

from edge.protocol import HealthBlock, Observation
from tests.web.conftest import AgentDevice, csrf_from, log_in, make_app


def test_status_shows_the_latest_photo_metrics_and_device_health(
    user: FlaskClient, device: AgentDevice
) -> None:
    latest = device.agent.store.recent(1)[0]
    page = user.get("/").text
    assert f"/api/v1/images/{latest.seq}?size=medium" in page
    assert f"/api/v1/images/{latest.seq}?overlay=1" in page
    assert f"{latest.canopy.cover_pct:.1f} %" in page
    for fact in ("Uptime", "Disk free", "CPU temperature", "Broker", "Outbox", "Model"):
        assert fact in page
    assert "model disabled in config" in page


def test_status_shows_the_models_verdict_and_confidence(fresh_device: AgentDevice) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    store = fresh_device.agent.store
    latest = store.recent(1)[0]
    verdict = HealthBlock(
        label="powdery_mildew", confidence=0.87, scores={"powdery_mildew": 0.87, "healthy": 0.13}
    )

    def build(seq: int, stored: bool) -> Observation:
        image = latest.image.model_copy(update={"stored": stored})
        return latest.model_copy(update={"seq": seq, "health": verdict, "image": image})

    store.add_observation(build, None)
    page = client.get("/").text
    assert "Powdery mildew" in page
    assert "87 % confidence" in page
    assert "photo was not kept" in page


def test_status_lists_the_open_alerts_the_agent_raised(
    user: FlaskClient, device: AgentDevice
) -> None:
    raised = device.agent.store.open_alerts()
    assert raised, "the seeded canopy yellows, which should raise an alert"
    page = user.get("/").text
    assert "Open alerts" in page
    for alert in raised:
        assert str(escape(alert.message)) in page
        assert f'href="/photo/{alert.raised_seq}"' in page


def test_capture_now_takes_a_photo_through_the_agent(fresh_device: AgentDevice) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    response = client.post("/capture", data={"csrf_token": csrf_from(client.get("/").text)})
    assert response.status_code == 303
    waiting = client.get(response.headers["Location"])
    fresh_device.wait_for_seq(2)
    assert 'http-equiv="refresh"' in waiting.text or '#<span class="seq">2<' in waiting.text
    arrived = client.get(response.headers["Location"]).text
    assert '#<span class="seq">2</span>' in arrived
    assert 'http-equiv="refresh"' not in arrived


def test_history_draws_a_chart_per_measurement_for_each_range(user: FlaskClient) -> None:
    for chosen in ("day", "week", "grow"):
        page = user.get(f"/history?range={chosen}").text
        assert page.count('<svg class="chart"') == 3
        assert "<polyline" in page, chosen
        assert "<script" not in page


def test_history_of_a_new_grow_shows_every_capture_by_default(fresh_device: AgentDevice) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    store = fresh_device.agent.store
    latest = store.recent(1)[0]
    first_seq = latest.seq + 1
    for i in range(8):
        at = latest.captured_at - timedelta(minutes=15 * (8 - i))

        def build(seq: int, stored: bool, at: datetime = at) -> Observation:
            image = latest.image.model_copy(update={"stored": stored})
            return latest.model_copy(update={"seq": seq, "captured_at": at, "image": image})

        store.add_observation(build, None)
    assert store.recent(1)[0].seq >= first_seq
    page = client.get("/history").text
    assert 'aria-current="page">Grow<' in page
    cover = re.search(r'<polyline class="series-cover" points="([^"]+)"', page)
    assert cover is not None, "a new grow's captures should draw a line, not one dot"
    assert len(cover.group(1).split()) >= 8


def test_history_without_a_model_says_so_in_the_health_chart(user: FlaskClient) -> None:
    page = user.get("/history?range=grow").text
    health_chart = page.split("<h2>Plant-health model</h2>")[1]
    assert "no data in this range" in health_chart


def test_photos_are_listed_by_day_with_thumbnails(user: FlaskClient) -> None:
    page = user.get("/photos").text
    days = re.findall(r'href="/photos/(\d{4}-\d\d-\d\d)"', page)
    assert days == ["2026-03-03", "2026-03-02"]
    assert "?size=thumb" in page
    day = user.get("/photos/2026-03-02").text
    assert day.count('loading="lazy"') == 5  # 09:00 .. 21:00, every 3 hours


def test_a_day_without_photos_or_a_bad_date_is_404(user: FlaskClient) -> None:
    assert user.get("/photos/2025-01-01").status_code == 404
    assert user.get("/photos/not-a-date").status_code == 404


def test_a_photo_page_shows_measurements_and_neighbours(user: FlaskClient) -> None:
    page = user.get("/photo/5").text
    assert 'href="/photo/4"' in page and 'href="/photo/6"' in page
    assert "Canopy cover" in page


def test_a_missing_photo_page_is_404(user: FlaskClient) -> None:
    assert user.get("/photo/999999").status_code == 404


def test_timelapse_steps_through_one_photo_a_day_without_script(user: FlaskClient) -> None:
    page = user.get("/timelapse").text
    assert 'frame <span id="frame-number">2</span> of 2' in page
    first = user.get("/timelapse?frame=0").text
    assert 'frame <span id="frame-number">1</span> of 2' in first
    assert 'src="/static/timelapse.js' in page


def test_timelapse_can_show_every_photo(user: FlaskClient, device: AgentDevice) -> None:
    photos = device.agent.store.stats().images
    page = user.get("/timelapse?all=1").text
    assert f"of {photos}" in page


def test_pages_have_no_inline_script_or_style(user: FlaskClient) -> None:
    for path in ("/", "/history", "/photos", "/photo/2", "/timelapse", "/login"):
        html = user.get(path).text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert " style=" not in html and "<style" not in html, path
        assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', ""), path


def _with_health(device: AgentDevice, health: HealthBlock) -> None:
    from edge.store import StoredImage

    store = device.agent.store
    latest = store.recent(1)[0]
    photo = store.image_path(latest.seq)
    assert photo is not None
    image = StoredImage(photo.read_bytes(), None)

    def build(seq: int, stored: bool) -> Observation:
        return latest.model_copy(update={"seq": seq, "health": health})

    store.add_observation(build, image)


def test_a_declined_verdict_shows_not_assessed_and_the_reason_never_red(
    fresh_device: AgentDevice,
) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    _with_health(
        fresh_device,
        HealthBlock(
            label="unknown",
            confidence=0.91,
            scores={"leaf_spot": 0.91, "healthy": 0.09},
            assessed=False,
            reason="not a leaf close-up the model knows",
        ),
    )
    page = client.get("/").text
    verdict = re.search(r'<p class="verdict ([a-z ]+)" id="verdict">(.*?)</p>', page, re.S)
    assert verdict is not None
    assert verdict.group(1) == "neutral"
    assert "Not assessed" in verdict.group(2)
    assert "not a leaf close-up the model knows" in verdict.group(2)
    assert "confidence" not in verdict.group(2)


def test_the_zone_map_toggles_over_the_photo_with_each_zone_lettered(
    fresh_device: AgentDevice,
) -> None:
    from edge.protocol import ZoneCell, ZoneGrid

    client = make_app(fresh_device).test_client()
    log_in(client)
    cells = [
        ZoneCell(zone="A1", row=0, col=0, label="healthy", confidence=0.9, plant_share=0.8),
        ZoneCell(zone="B3", row=1, col=2, label="leaf_spot", confidence=0.8, plant_share=0.6),
        ZoneCell(zone="B2", row=1, col=1, label="unknown", confidence=0.5, plant_share=0.4),
    ]
    _with_health(
        fresh_device,
        HealthBlock(
            label="healthy",
            confidence=0.8,
            scores={"healthy": 0.8, "leaf_spot": 0.2},
            zones=ZoneGrid(rows=3, cols=4, tile_px=80, cells=cells),
        ),
    )
    page = client.get("/").text
    assert 'class="zones-toggle"' in page
    assert 'viewBox="0 0 4 3"' in page
    assert page.count('<g class="zone ') == 3
    assert 'class="zone z-leaf_spot"' in page and ">LS</text>" in page
    assert "Zone B3: Leaf spot (80 %)" in page
    assert "Zone B2: not assessed" in page


def test_an_alert_on_the_page_names_its_problem_once(fresh_device: AgentDevice) -> None:
    from edge.tables import AlertRow

    client = make_app(fresh_device).test_client()
    log_in(client)
    latest = fresh_device.agent.store.recent(1)[0]
    with fresh_device.agent.store.transaction() as tx:
        tx.open_alert(
            AlertRow(
                kind="health",
                label="leaf_spot",
                message="Leaf spot seen on 3 captures in a row",
                value=0.9,
                raised_at=latest.captured_at,
                raised_seq=latest.seq,
            )
        )
    page = client.get("/").text
    alerts = page.split('id="alerts-h"')[1].split("</section>")[0]
    text = re.sub(r"<[^>]+>", " ", alerts)
    assert re.search(r"leaf spot\s+leaf spot", text, re.I) is None
    assert "Leaf spot seen on 3 captures in a row" in text


def test_the_page_resets_the_grow_baseline(fresh_device: AgentDevice) -> None:
    from edge.baseline import Sample

    client = make_app(fresh_device).test_client()
    log_in(client)
    agent = fresh_device.agent
    import numpy as np

    sample = Sample(1, agent.clock.now(), "whole", np.ones(4, np.float32) / 2, 100.0, 0.6, 1, 0)
    with agent.store.transaction() as tx:
        tx.session.add(sample.row())
    agent.baseline.add(sample)
    assert agent.baseline.count == 1
    page = client.get("/").text
    response = client.post("/baseline/reset", data={"csrf_token": csrf_from(page)})
    assert response.status_code == 303
    assert agent.baseline.count == 0
    assert type(agent.baseline).load(agent.store.engine, 6).count == 0


def _without_colour(latest: Observation, reason: str) -> Callable[[int, bool], Observation]:
    """A copy of `latest` whose colour the analysis could not measure."""
    canopy = latest.canopy.model_copy(
        update={
            "yellow_pct": None,
            "brown_pct": None,
            "hue_mean_deg": None,
            "hue_median_deg": None,
            "greenness_index": None,
            "light": "red_blue",
            "colour_reason": reason,
        }
    )

    def build(seq: int, stored: bool) -> Observation:
        image = latest.image.model_copy(update={"stored": stored})
        return latest.model_copy(update={"seq": seq, "canopy": canopy, "image": image})

    return build


def test_colour_not_measured_is_said_with_its_reason_not_shown_as_a_number(
    fresh_device: AgentDevice,
) -> None:
    client = make_app(fresh_device).test_client()
    log_in(client)
    store = fresh_device.agent.store
    latest = store.recent(1)[0]
    reason = "narrow-band red/blue LED light: leaf colour cannot be told apart"
    obs = store.add_observation(_without_colour(latest, reason), None)
    for page in (client.get("/").text, client.get(f"/photo/{obs.seq}").text):
        metrics = page[page.index('<dl class="metrics">') :]
        metrics = metrics[: metrics.index("</dl>")]
        for name in ("Yellow leaf", "Brown leaf", "Greenness", "Leaf hue"):
            shown = re.search(rf"<dt>{name}</dt><dd>(.*?)</dd>", metrics, re.S)
            assert shown is not None, name
            assert 'class="unmeasured"' in shown.group(1) and "not measured" in shown.group(1)
            assert str(escape(reason)) in shown.group(1)
            assert "%" not in shown.group(1)
        assert f"{obs.canopy.cover_pct:.1f} %" in metrics  # what was measured still shows
    assert client.get("/history?range=day").status_code == 200


def test_timelapse_video_downloads_as_mp4_that_opencv_reads(
    user: FlaskClient, device: AgentDevice, tmp_path: Path
) -> None:
    page = user.get("/timelapse").text
    assert 'href="/timelapse/video"' in page
    response = user.get("/timelapse/video?all=1")
    assert response.status_code == 200 and response.mimetype == "video/mp4"
    assert "attachment" in response.headers["Content-Disposition"]
    out = tmp_path / "grow.mp4"
    out.write_bytes(response.data)
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert 0 < frames <= device.agent.store.stats().images
    again = user.get("/timelapse/video?all=1")
    assert again.data == response.data  # reused until a new photo arrives


def test_timelapse_video_needs_a_login(client: FlaskClient) -> None:
    response = client.get("/timelapse/video")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
