"""A real browser (headless Chromium) uses the page as a grower would, on a phone and a desktop.

Needs the Debian package `chromium` and the `playwright` Python package (never
`playwright install`: the system Chromium is used). Skipped when either is missing,
except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.web.server import WebServer
from tests.conftest import REPO
from tests.web.conftest import PASSWORD, AgentDevice, make_app, start_device

pytestmark = pytest.mark.slow
SCREENSHOTS = REPO / "test-output"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}


def _chromium() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright Python package is not installed (make test installs it)"
    if problem is None and not Path(path).is_file():
        problem = f"Chromium not found at {path} (apt-get install chromium)"
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless system Chromium driven by Playwright."""
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[WebServer, AgentDevice]]:
    """The page of a real agent, served by waitress on a free loopback port."""
    device = start_device(tmp_path / "data", captures=6)
    server = WebServer(make_app(device), host="127.0.0.1", port=0).start()
    yield server, device
    server.stop()
    device.close()


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_grower_signs_in_sees_the_canopy_and_captures_a_photo(
    browser: Any, served: tuple[WebServer, AgentDevice], viewport: str
) -> None:
    from playwright.sync_api import expect

    server, device = served
    context = browser.new_context(viewport=VIEWPORTS[viewport], device_scale_factor=2)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    try:
        page.goto(server.url + "/")
        expect(page).to_have_title("Sign in · test-cam")
        page.fill("#password", PASSWORD)
        page.click("button:has-text('Sign in')")

        expect(page.locator("#latest-caption .seq")).to_have_text("6")
        photo = page.locator(".photo-stack img.photo")
        expect(photo).to_be_visible()
        assert page.evaluate("img => img.complete && img.naturalWidth > 0", photo.element_handle())
        latest = device.agent.store.recent(1)[0]
        expect(page.locator(".metrics")).to_contain_text(f"{latest.canopy.cover_pct:.1f} %")
        expect(page.locator(".mask")).to_be_hidden()
        page.check(".mask-toggle")
        expect(page.locator(".mask")).to_be_visible()

        page.click("button:has-text('Capture now')")
        expect(page.locator("#latest-caption .seq")).to_have_text("7", timeout=15_000)
        assert device.agent.store.stats().last_seq == 7
        SCREENSHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"web-status-{viewport}.png"), full_page=True)

        page.click("nav a:has-text('History')")
        expect(page.locator("svg.chart")).to_have_count(3)
        page.screenshot(path=str(SCREENSHOTS / f"web-history-{viewport}.png"), full_page=True)
    finally:
        context.close()
    assert problems == []


def test_timelapse_plays_with_its_script(
    browser: Any, served: tuple[WebServer, AgentDevice]
) -> None:
    from playwright.sync_api import expect

    server, _ = served
    context = browser.new_context(viewport=VIEWPORTS["phone"])
    page = context.new_page()
    try:
        page.goto(server.url + "/login?next=/timelapse?all=1")
        page.fill("#password", PASSWORD)
        page.click("button:has-text('Sign in')")
        expect(page.locator("#frame-number")).to_have_text("6")
        page.locator("#scrub").fill("0")
        expect(page.locator("#frame-number")).to_have_text("1")
        page.click("#play")
        expect(page.locator("#frame-number")).to_have_text("6", timeout=10_000)
        expect(page.locator("#play")).to_have_text("Play")
    finally:
        context.close()
