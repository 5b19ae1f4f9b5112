"""Status page latency with 10,000 observations stored, against /healthz; page weight.

A real agent stores its observations in a temporary folder: one synthetic capture,
then 10,000 more rows bulk-inserted from it (15 minutes apart, a 104-day grow), then
one more capture so the latest observation has its photo and plant-mask overlay.
The page is served by waitress (`WebServer`) on a free loopback port; a signed-in
client on one keep-alive connection asks for `/healthz` (the baseline: the server
and the framework, no work) and for the status page `/`, alternately, and compares
the medians. Other pages are timed the same way for reference.

The page weight is what a phone downloads on its first visit: the status page's
HTML and every stylesheet, script and image it references (the plant-mask overlay
is loaded only when the grower turns it on, and is listed apart).
"""

from __future__ import annotations

import argparse
import http.client
import logging
import re
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path

from _common import environment, median, ms, print_goal, print_table
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from edge.agent import Agent
from edge.clock import FakeClock
from edge.config import config_from_data
from edge.protocol import Observation
from edge.tables import Counter, ObservationRow
from edge.web.app import create_app
from edge.web.device import DeviceStatus
from edge.web.password import hash_password
from edge.web.server import WebServer
from edge.web.settings import WebConfig

OBSERVATIONS = 10_000
STEP = timedelta(minutes=15)
RATIO_GOAL = 5.0
PASSWORD = "bench-password-1"
TIME_LIMIT_S = 60.0
OTHER_PAGES = ["/api/v1/status", "/history?range=week", "/history?range=grow", "/photos"]


class AgentView:
    """The page's view of the bench agent (what the agent itself provides on a device)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def status(self) -> DeviceStatus:
        """The agent's state."""
        return self.agent.status()

    def request_capture(self) -> None:
        """Not used by the benchmark."""
        self.agent.request_capture()


def seed(data_dir: Path, count: int) -> Agent:
    """An agent whose store holds `count` + 2 observations, the newest with its photo."""
    config = config_from_data(
        {
            "device": {"id": "bench-cam"},
            "camera": {"backend": "synthetic", "yellowing_onset_day": 30},
            "model": {"enabled": False},
            "storage": {"dir": str(data_dir), "min_free_mb": 0},
        },
        env={},
        source="bench",
    )
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    clock = FakeClock(start)
    agent = Agent(config, clock=clock).start()
    template = agent.capture_once()
    if template is None:
        raise RuntimeError(f"capture failed: {agent.stats.last_error}")
    no_photo = template.image.model_copy(update={"stored": False})
    rows = []
    for i in range(count):
        seq = template.seq + 1 + i
        at = template.captured_at + STEP * (i + 1)
        cover = min(95.0, 5.0 + 90.0 * i / count)
        canopy = template.canopy.model_copy(update={"cover_pct": round(cover, 2)})
        obs = template.model_copy(
            update={"seq": seq, "captured_at": at, "canopy": canopy, "image": no_photo}
        )
        rows.append(_row(obs))
    with Session(agent.store.engine) as s, s.begin():
        s.execute(insert(ObservationRow), rows)
        s.execute(update(Counter).where(Counter.name == "seq").values(value=template.seq + count))
    clock.set(template.captured_at + STEP * (count + 1))
    if agent.capture_once() is None:
        raise RuntimeError(f"capture failed: {agent.stats.last_error}")
    return agent


def _row(obs: Observation) -> dict[str, object]:
    return {
        "seq": obs.seq,
        "device_id": obs.device_id,
        "captured_at": obs.captured_at,
        "cover_pct": obs.canopy.cover_pct,
        "yellow_pct": obs.canopy.yellow_pct,
        "brown_pct": obs.canopy.brown_pct,
        "health_label": None,
        "health_confidence": None,
        "payload": obs.model_dump_json(),
        "image_path": None,
        "overlay_path": None,
        "image_bytes": 0,
    }


class Client:
    """One keep-alive HTTP connection with the session cookie of a signed-in grower."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        self.cookie = ""

    def request(self, method: str, path: str, body: str | None = None) -> tuple[int, bytes]:
        """Send one request; keeps the session cookie."""
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        cookie = response.getheader("Set-Cookie")
        if cookie:
            self.cookie = cookie.split(";", 1)[0]
        return response.status, data

    def sign_in(self) -> None:
        """Through the login form, CSRF token included."""
        _, page = self.request("GET", "/login")
        found = re.search(rb'name="csrf_token" value="([^"]+)"', page)
        if found is None:
            raise RuntimeError("login page has no CSRF token")
        form = f"csrf_token={found.group(1).decode()}&password={PASSWORD}&next=/"
        status, _ = self.request("POST", "/login", form)
        if status != 303:
            raise RuntimeError(f"sign-in failed with HTTP {status}")

    def timed_get(self, path: str) -> float:
        """Seconds for one GET, body included; fails on anything but 200."""
        started = time.perf_counter()
        status, _ = self.request("GET", path)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}")
        return elapsed


class _Assets(HTMLParser):
    """Collects the URLs a page makes the browser fetch."""

    def __init__(self) -> None:
        super().__init__()
        self.eager: list[str] = []
        self.lazy: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        url = a.get("src") if tag in ("img", "script") else None
        if tag == "link" and a.get("rel") in ("stylesheet", "icon"):
            url = a.get("href")
        if url:
            (self.lazy if a.get("loading") == "lazy" else self.eager).append(url)


def page_weight(client: Client) -> list[tuple[str, int, str]]:
    """(url, bytes, when loaded) for the status page and everything it references."""
    _, html = client.request("GET", "/")
    parser = _Assets()
    parser.feed(html.decode())
    rows = [("/ (HTML)", len(html), "first visit")]
    for urls, when in ((parser.eager, "first visit"), (parser.lazy, "mask turned on")):
        for url in dict.fromkeys(urls):
            _, data = client.request("GET", url.replace("&amp;", "&"))
            rows.append((url, len(data), when))
    return rows


def alternate(client: Client, paths: list[str], rounds: int) -> dict[str, list[float]]:
    """Time each path once per round, rotating the order; bounded by TIME_LIMIT_S."""
    times: dict[str, list[float]] = {p: [] for p in paths}
    deadline = time.monotonic() + TIME_LIMIT_S
    for r in range(rounds):
        for path in paths[r % len(paths) :] + paths[: r % len(paths)]:
            times[path].append(client.timed_get(path))
        if time.monotonic() > deadline:
            break
    return times


def p95(values: list[float]) -> float:
    """95th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def run(rounds: int, count: int) -> None:
    """Seed, serve, time, print."""
    print(environment())
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        data_dir = Path(tmp) / "data"
        started = time.perf_counter()
        agent = seed(data_dir, count)
        print(
            f"seeded {agent.store.stats().observations} observations in "
            f"{time.perf_counter() - started:.1f} s"
        )
        app = create_app(
            WebConfig(password_hash=hash_password(PASSWORD)),
            data_dir,
            agent.store,
            AgentView(agent),
            agent.metrics,
            clock=agent.clock,
            timezone="UTC",
        )
        server = WebServer(app, host="127.0.0.1", port=0).start()
        try:
            client = Client(server.port)
            client.sign_in()
            for path in ["/healthz", "/", *OTHER_PAGES]:
                client.timed_get(path)  # template compilation, first queries: untimed
            core = alternate(client, ["/healthz", "/"], rounds)
            others = alternate(client, ["/healthz", *OTHER_PAGES], max(10, rounds // 5))
            weight = page_weight(client)
        finally:
            server.stop()
            agent.close()
    base = median(core["/healthz"])
    table = [
        (path, len(values), ms(median(values)), ms(p95(values)), f"{median(values) / base:.1f}x")
        for path, values in [("/healthz", core["/healthz"]), ("/", core["/"])]
    ]
    other_base = median(others["/healthz"])
    table += [
        (
            path,
            len(others[path]),
            ms(median(others[path])),
            ms(p95(others[path])),
            f"{median(others[path]) / other_base:.1f}x",
        )
        for path in OTHER_PAGES
    ]
    print()
    print_table(["path", "runs", "p50 ms", "p95 ms", "p50 / healthz"], table)
    print()
    print_table(["page weight", "bytes", "loaded"], weight, align="lrl")
    first = sum(size for _, size, when in weight if when == "first visit")
    print(f"status page, first visit: {first / 1024:.1f} KiB")
    ratio = median(core["/"]) / base
    print()
    print_goal(
        f"status page p50 <= {RATIO_GOAL:.0f}x /healthz (measured {ratio:.1f}x)",
        ratio <= RATIO_GOAL,
    )


def main() -> int:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300, help="timed rounds (default 300)")
    parser.add_argument("--observations", type=int, default=OBSERVATIONS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("waitress").setLevel(logging.ERROR)  # "task queue depth" notes
    run(args.rounds, args.observations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
