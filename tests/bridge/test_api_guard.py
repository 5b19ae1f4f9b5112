"""The read API's outer guard: CORS allow-list, size limits, headers on every error,
and a rate limit all replicas share (PostgreSQL)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, create_engine, event, text

from cloud_bridge.api import create_app
from cloud_bridge.config import ConfigError, config_from_data
from cloud_bridge.guard import SECURITY_HEADERS, RateLimiter, SharedRateLimiter
from cloud_bridge.queries import FleetReader
from tests.bridge.conftest import bridge_settings
from tests.bridge.process import BridgeProcess
from tests.mqtt_broker import free_port

TOKEN = "guard-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DASHBOARD = "https://grafana.farm.example"


def _app(engine: Engine, **kwargs: Any) -> Flask:
    app = create_app(
        FleetReader(engine), {}, CollectorRegistry(), TOKEN, RateLimiter(1000), **kwargs
    )

    @app.get("/api/v1/boom")
    def boom() -> str:
        raise RuntimeError("a bug")

    return app


def _assert_secure(headers: Any) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name


def test_cors_is_closed_by_default(engine: Engine) -> None:
    c = _app(engine).test_client()
    refused = c.get("/api/v1/devices", headers={**AUTH, "Origin": DASHBOARD})
    assert refused.status_code == 403 and refused.json == {"error": "origin not allowed"}
    assert "Access-Control-Allow-Origin" not in refused.headers
    _assert_secure(refused.headers)
    assert c.get("/api/v1/devices", headers=AUTH).status_code == 200  # no Origin: not a browser


def test_an_allowed_origin_gets_cors_headers_and_a_preflight(engine: Engine) -> None:
    c = _app(engine, cors_origins=[DASHBOARD]).test_client()
    ok = c.get("/api/v1/devices", headers={**AUTH, "Origin": DASHBOARD})
    assert ok.status_code == 200
    assert ok.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Origin" in ok.headers["Vary"]
    preflight = c.options(
        "/api/v1/devices",
        headers={
            "Origin": DASHBOARD,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )
    assert preflight.status_code == 204  # a preflight carries no token
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET"
    assert preflight.headers["Access-Control-Allow-Headers"] == "Authorization"
    assert preflight.headers["Access-Control-Allow-Origin"] == DASHBOARD
    _assert_secure(preflight.headers)
    post = c.options(
        "/api/v1/devices", headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "POST"}
    )
    assert post.status_code == 405 and "Access-Control-Allow-Methods" not in post.headers
    other = c.get("/api/v1/devices", headers={**AUTH, "Origin": "https://evil.example"})
    assert other.status_code == 403 and "Access-Control-Allow-Origin" not in other.headers


@pytest.mark.parametrize(
    "origin", ["*", "https://grafana.example/", "https://grafana.example/path", "grafana", "null"]
)
def test_cors_origins_must_be_plain_origins(origin: str) -> None:
    with pytest.raises(ConfigError, match="cors_origins"):
        config_from_data({"http": {"cors_origins": [origin]}}, env={})


def test_cors_origins_accept_hosts_ports_and_ipv6() -> None:
    origins = ["https://Grafana.Example:3000", "http://[::1]:3000", "http://127.0.0.1"]
    config = config_from_data({"http": {"cors_origins": origins}}, env={})
    assert config.http.cors_origins[0] == "https://grafana.example:3000"


def test_every_error_carries_the_security_headers(engine: Engine) -> None:
    app = _app(engine, max_request_bytes=100, max_url_bytes=300)
    app.testing = False  # a bug must become a 500, not propagate into the test
    c = app.test_client()
    limited = create_app(FleetReader(engine), {}, CollectorRegistry(), TOKEN, RateLimiter(1))
    lc = limited.test_client()
    lc.get("/api/v1/devices", headers=AUTH)
    responses = {
        401: c.get("/api/v1/devices"),
        403: c.get("/api/v1/devices", headers={**AUTH, "Origin": DASHBOARD}),
        404: c.get("/api/v1/nowhere", headers=AUTH),
        405: c.post("/api/v1/devices", headers=AUTH),
        413: c.get("/api/v1/devices", headers=AUTH, data=b"x" * 101),
        414: c.get("/api/v1/devices?site=" + "a" * 300, headers=AUTH),
        429: lc.get("/api/v1/devices", headers=AUTH),
        500: c.get("/api/v1/boom", headers=AUTH),
    }
    for status, response in responses.items():
        assert response.status_code == status, (status, response.data)
        _assert_secure(response.headers)
        assert response.is_json and response.json is not None and response.json["error"]
    assert "GET" in responses[405].headers["Allow"]
    assert "a bug" not in responses[500].get_data(as_text=True)


@pytest.fixture
def served(engine: Engine) -> Iterator[int]:
    """The API behind waitress on a free port, with a 1000-byte body limit."""
    from waitress.server import create_server

    app = _app(engine, max_request_bytes=1000)
    server = create_server(app, host="127.0.0.1", port=0, threads=2, max_request_body_size=70_000)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield int(server.effective_port)
    server.task_dispatcher.shutdown(timeout=2)
    server.close()


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_chunked_body_over_the_limit_is_413_with_headers(served: int) -> None:
    body = b"".join(b"100\r\n" + b"x" * 256 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
    answer = _raw(
        served,
        b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guard-token\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + body,
    )
    head = answer.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 413"), head
    assert "X-Content-Type-Options: nosniff" in head
    small = b"5\r\nhello\r\n0\r\n\r\n"
    answer = _raw(
        served,
        b"GET /api/v1/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guard-token\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + small,
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_the_shared_budget_is_one_for_all_limiters(engine: Engine) -> None:
    a, b = SharedRateLimiter(engine, 5), SharedRateLimiter(engine, 5)
    waits = [limiter.allow("10.0.0.7") for limiter in (a, b, a, b, a, b, a)]
    assert waits[:5] == [0.0] * 5
    assert all(w > 0 for w in waits[5:])
    assert a.allow("10.0.0.8") == 0.0  # another client, its own budget


def test_the_shared_budget_refills_with_time(engine: Engine) -> None:
    limiter = SharedRateLimiter(engine, 60)  # one a second
    for _ in range(60):
        assert limiter.allow("10.0.0.9") == 0.0
    assert limiter.allow("10.0.0.9") > 0
    with engine.begin() as conn:  # ten seconds pass
        conn.execute(
            text(
                "UPDATE api_rate_limits SET updated_at = updated_at - interval '10 seconds' "
                "WHERE client = '10.0.0.9'"
            )
        )
    assert [limiter.allow("10.0.0.9") for _ in range(11)].count(0.0) == 10


def test_without_its_database_the_limiter_limits_in_process() -> None:
    dead = create_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        connect_args={"connect_timeout": 2},
    )
    limiter = SharedRateLimiter(dead, 3)
    waits = [limiter.allow("10.0.0.1") for _ in range(4)]
    assert waits[:3] == [0.0] * 3 and waits[3] > 0
    dead.dispose()


@pytest.fixture
def bridge_api(
    broker: Any, pg_url: str, tmp_path: Path
) -> Iterator[Callable[[int], BridgeProcess]]:
    """Bridge processes on one broker and database, read API on a free port each."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    made: list[BridgeProcess] = []

    def make(per_minute: int) -> BridgeProcess:
        http = {
            "enabled": True,
            "port": free_port(),
            "token_file": str(token_file),
            "rate_limit_per_minute": per_minute,
        }
        settings = bridge_settings(broker, pg_url, http=http)
        process = BridgeProcess(settings, tmp_path, f"api-{uuid.uuid4().hex[:6]}").start()
        made.append(process)
        return process

    yield make
    for process in made:
        process.terminate()


@pytest.mark.slow
def test_two_bridge_processes_share_one_budget(bridge_api: Callable[[int], BridgeProcess]) -> None:
    import urllib.error
    import urllib.request

    bridges = [bridge_api(6), bridge_api(6)]

    def status(bridge: BridgeProcess) -> int:
        request = urllib.request.Request(
            f"http://127.0.0.1:{bridge.port}/api/v1/devices", headers=AUTH
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as exc:
            assert exc.headers["X-Content-Type-Options"] == "nosniff"
            return int(exc.code)

    codes = [[status(b) for b in bridges] for _ in range(8)]
    per_bridge = [[c[i] for c in codes] for i in range(2)]
    allowed = sum(code == 200 for row in codes for code in row)
    # One budget of 6 (plus what trickles in at 6 a minute while the loop runs);
    # a budget per process would have let 12 through.
    assert 6 <= allowed <= 7, codes
    assert all(429 in statuses for statuses in per_bridge), codes
    assert all(code in (200, 429) for row in codes for code in row)


def test_idle_budgets_are_forgotten(engine: Engine) -> None:
    limiter = SharedRateLimiter(engine, 60)
    limiter.allow("10.0.0.20")
    with engine.begin() as conn:  # idle for longer than a full refill takes
        conn.execute(text("UPDATE api_rate_limits SET updated_at = now() - interval '2 minutes'"))
    limiter._next_forget = 0.0
    limiter.allow("10.0.0.21")
    with engine.connect() as conn:
        clients = {r[0] for r in conn.execute(text("SELECT client FROM api_rate_limits"))}
    assert clients == {"10.0.0.21"}


def _in_thread(call: Callable[[], float], limit_s: float = 20.0) -> float:
    """Run `call` in a thread; fail (instead of hanging the suite) if it never returns."""
    result: list[float] = []
    worker = threading.Thread(target=lambda: result.append(call()), daemon=True)
    worker.start()
    worker.join(limit_s)
    assert not worker.is_alive(), f"still waiting on the database after {limit_s} s"
    return result[0]


def test_a_locked_budget_row_does_not_hold_requests(engine: Engine, pg_url: str) -> None:
    """Another connection holds the client's row locked: the upsert gives up after its
    lock timeout, the process's own budget decides, and later requests skip the database
    until the back-off has passed."""
    clock = [1000.0]
    limiter = SharedRateLimiter(engine, 3, RateLimiter(3, clock=lambda: clock[0]), lambda: clock[0])
    assert limiter.allow("10.0.0.30") == 0.0  # the row exists
    statements: list[str] = []

    def seen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    holder = create_engine(pg_url)
    with holder.connect() as conn:
        conn.execute(text("SELECT * FROM api_rate_limits WHERE client = '10.0.0.30' FOR UPDATE"))
        # Without lock_timeout this would wait as long as the lock is held: forever here.
        waits = [_in_thread(lambda: limiter.allow("10.0.0.30")) for _ in range(4)]
        taken = [s for s in statements if "INSERT INTO api_rate_limits" in s]
        assert len(taken) == 1, "after a failure the database is not asked again at once"
        assert any("lock_timeout" in s for s in statements)
        assert waits[:3] == [0.0] * 3 and waits[3] > 0  # the in-process budget of 3
        conn.rollback()
    # The back-off passes: the next request uses the shared budget again.
    clock[0] += SharedRateLimiter.BACKOFF_S + 1
    statements.clear()
    assert limiter.allow("10.0.0.30") == 0.0
    assert any("INSERT INTO api_rate_limits" in s for s in statements)
    event.remove(engine, "before_cursor_execute", seen)
    holder.dispose()


def test_an_unreachable_database_is_tried_once_per_back_off() -> None:
    """With nothing listening, the first request learns it; the next ones do not retry."""
    dead = create_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        connect_args={"connect_timeout": 2},
    )
    clock = [0.0]
    limiter = SharedRateLimiter(dead, 100, clock=lambda: clock[0])
    original_take = limiter._take
    takes: list[str] = []

    def take(key: str) -> Any:
        takes.append(key)
        return original_take(key)

    limiter._take = take  # type: ignore[method-assign]
    for _ in range(20):
        assert _in_thread(lambda: limiter.allow("10.0.0.31")) == 0.0
    assert len(takes) == 1
    clock[0] += SharedRateLimiter.BACKOFF_S + 1
    assert _in_thread(lambda: limiter.allow("10.0.0.31")) == 0.0
    assert len(takes) == 2
    dead.dispose()


def test_metrics_never_waits_on_the_database(engine: Engine, pg_url: str) -> None:
    """/metrics is limited in the process only: a locked or sick database does not stop
    the scrapes that would show it."""
    limiter = SharedRateLimiter(engine, 1000)
    app = create_app(FleetReader(engine), {}, CollectorRegistry(), TOKEN, limiter)
    client = app.test_client()
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM api_rate_limits"))
    assert client.get("/metrics", headers=AUTH).status_code == 200
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM api_rate_limits")).scalar_one()
    assert rows == 0, "a scrape drew on the shared budget"
    assert client.get("/api/v1/devices", headers=AUTH).status_code == 200
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM api_rate_limits")).scalar_one()
    assert rows == 1


def test_idle_budgets_are_forgotten_in_a_transaction_of_their_own(engine: Engine) -> None:
    """The clean-up DELETE never shares a transaction with a token update (two replicas
    could otherwise deadlock on each other's rows)."""
    limiter = SharedRateLimiter(engine, 60)
    transactions: list[list[str]] = []

    def begin(_conn: Any) -> None:
        transactions.append([])

    def seen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        if transactions:
            transactions[-1].append(statement)

    event.listen(engine, "begin", begin)
    event.listen(engine, "before_cursor_execute", seen)
    limiter.allow("10.0.0.40")
    event.remove(engine, "begin", begin)
    event.remove(engine, "before_cursor_execute", seen)
    takes = [t for t in transactions if any("INSERT INTO api_rate_limits" in s for s in t)]
    forgets = [t for t in transactions if any("DELETE FROM api_rate_limits" in s for s in t)]
    assert len(takes) == 1 and len(forgets) == 1
    assert takes[0] is not forgets[0]
    assert not any("DELETE" in s for s in takes[0])
