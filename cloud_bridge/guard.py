"""What stands in front of every request: size limits, CORS, rate limit, bearer token,
and the security headers on every response, errors included."""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("cloud_bridge.guard")

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
LOCAL_LIMIT_PATHS = frozenset({"/metrics"})
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}
CORS_MAX_AGE_S = 600
MAX_CLIENT_KEY = 128


class Limiter(Protocol):
    """A per-client request budget."""

    def allow(self, client: str) -> float:
        """0 if the request may go ahead, else seconds until it may."""
        ...


class RateLimiter:
    """A token bucket per client address in this process: `per_minute` requests,
    refilled evenly."""

    MAX_CLIENTS = 10_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str) -> float:
        """0 if the request may go ahead, else seconds until it may."""
        now = self.clock()
        with self._lock:
            tokens, updated = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - updated) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                self._forget_idle(now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate

    def _forget_idle(self, now: float) -> None:
        if len(self._buckets) <= self.MAX_CLIENTS:
            return
        full = self.capacity / self.rate
        for client, (_, updated) in list(self._buckets.items()):
            if now - updated >= full:
                del self._buckets[client]


# One statement takes a token atomically: PostgreSQL locks the client's row for the
# upsert, so concurrent requests to different replicas are counted one after another.
_TAKE = text(
    """
    INSERT INTO api_rate_limits AS b (client, tokens, allowed, updated_at)
    VALUES (:client, :capacity - 1, true, now())
    ON CONFLICT (client) DO UPDATE SET
      tokens = CASE
        WHEN LEAST(:capacity, b.tokens + EXTRACT(EPOCH FROM now() - b.updated_at) * :rate) >= 1
        THEN LEAST(:capacity, b.tokens + EXTRACT(EPOCH FROM now() - b.updated_at) * :rate) - 1
        ELSE LEAST(:capacity, b.tokens + EXTRACT(EPOCH FROM now() - b.updated_at) * :rate)
      END,
      allowed =
        LEAST(:capacity, b.tokens + EXTRACT(EPOCH FROM now() - b.updated_at) * :rate) >= 1,
      updated_at = now()
    RETURNING tokens, allowed
    """
)
# SET LOCAL for both timeouts in one statement.
_BOUND = text(
    "SELECT set_config('statement_timeout', :ms, true), set_config('lock_timeout', :ms, true)"
)
# A bucket idle for longer than it takes to refill is full: forget it.
_FORGET = text("DELETE FROM api_rate_limits WHERE updated_at < now() - make_interval(secs => :s)")


class SharedRateLimiter:
    """The same token bucket kept in PostgreSQL (table api_rate_limits), so every bridge
    replica draws on one budget per client.

    If the database cannot be reached, is slow or holds the client's row locked, this
    process's own bucket (`fallback`) decides, so an outage neither opens the API without
    limit nor closes it. Each statement may wait at most `TIMEOUT_MS` for a lock or an
    answer; after a failure the fallback alone decides for `BACKOFF_S` seconds, and then
    one request at a time tries the database again, so a sick database costs one slow
    request per back-off, not every request.
    """

    FORGET_EVERY_S = 60.0
    BACKOFF_S = 30.0
    TIMEOUT_MS = 250

    def __init__(
        self,
        engine: Engine,
        per_minute: int,
        fallback: RateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.fallback = fallback or RateLimiter(per_minute)
        self.clock = clock
        self._next_forget = 0.0
        self._fallback_until = 0.0
        self._probing = threading.Lock()
        self._warned = False

    def allow(self, client: str) -> float:
        """0 if the request may go ahead, else seconds until it may."""
        key = client[:MAX_CLIENT_KEY]
        if self.clock() < self._fallback_until:
            return self.fallback.allow(key)
        # While the database is known to be failing, one request probes it; the
        # others do not queue behind that probe.
        probe = self._warned
        if probe and not self._probing.acquire(blocking=False):
            return self.fallback.allow(key)
        try:
            row = self._take(key)
        except SQLAlchemyError as exc:
            self._fallback_until = self.clock() + self.BACKOFF_S
            if not self._warned:
                log.warning(
                    "shared rate limit unavailable; limiting in this process",
                    extra={"error": str(exc).splitlines()[0][:200], "retry_s": self.BACKOFF_S},
                )
                self._warned = True
            return self.fallback.allow(key)
        finally:
            if probe:
                self._probing.release()
        if self._warned:
            log.info("shared rate limit reachable again")
            self._warned = False
        self._forget_idle()
        tokens, allowed = float(row[0]), bool(row[1])
        return 0.0 if allowed else (1 - tokens) / self.rate

    def _bounded(self, conn: Connection) -> None:
        """This transaction's statements wait at most TIMEOUT_MS (one round trip)."""
        conn.execute(_BOUND, {"ms": f"{int(self.TIMEOUT_MS)}ms"})

    def _take(self, key: str) -> Any:
        with self.engine.begin() as conn:
            self._bounded(conn)
            return conn.execute(
                _TAKE, {"client": key, "capacity": self.capacity, "rate": self.rate}
            ).one()

    def _forget_idle(self) -> None:
        """Delete idle buckets in a transaction of its own, so the clean-up never holds
        a row lock that another replica's token update waits for (or the reverse)."""
        now = self.clock()
        if now < self._next_forget:
            return
        self._next_forget = now + self.FORGET_EVERY_S
        try:
            with self.engine.begin() as conn:
                self._bounded(conn)
                conn.execute(_FORGET, {"s": self.capacity / self.rate})
        except SQLAlchemyError as exc:
            log.info(
                "idle rate-limit budgets not forgotten this time",
                extra={"error": str(exc).splitlines()[0][:200]},
            )


def _error(message: str, status: int) -> tuple[Response, int]:
    return jsonify(error=message), status


def install_guard(
    app: Flask,
    token: str | None,
    limiter: Limiter,
    cors_origins: Iterable[str] = (),
    max_request_bytes: int = 16_384,
    max_url_bytes: int = 8192,
) -> None:
    """Check size, origin, rate and token before every request; add headers after."""
    origins = frozenset(o.lower() for o in cors_origins)
    app.config["MAX_CONTENT_LENGTH"] = max_request_bytes

    def too_big() -> bool:
        if request.content_length is not None:
            return request.content_length > max_request_bytes
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # No length given: read at most one byte past the limit to find out.
            return len(request.stream.read(max_request_bytes + 1)) > max_request_bytes
        return False

    @app.before_request
    def _check() -> Response | tuple[Response, int] | None:
        if len(request.full_path) > max_url_bytes:
            return _error(f"URL longer than {max_url_bytes} bytes", 414)
        if too_big():
            return _error(f"request body larger than {max_request_bytes} bytes", 413)
        origin = request.headers.get("Origin")
        if origin is not None and origin.lower() not in origins:
            return _error("origin not allowed", 403)
        if request.path not in OPEN_PATHS:
            # /metrics never waits on the database: a sick database must not
            # stop the scrapes that show it is sick.
            chosen = limiter
            if request.path in LOCAL_LIMIT_PATHS and isinstance(limiter, SharedRateLimiter):
                chosen = limiter.fallback
            wait = chosen.allow(request.remote_addr or "unknown")
            if wait > 0:
                response = jsonify(error="too many requests")
                response.headers["Retry-After"] = str(max(1, round(wait)))
                return response, 429
        if request.method == "OPTIONS" and origin is not None:
            if request.headers.get("Access-Control-Request-Method", "GET") != "GET":
                return _error("only GET is allowed", 405)
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET"
            response.headers["Access-Control-Allow-Headers"] = "Authorization"
            response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
            return response
        if request.path in OPEN_PATHS:
            return None
        if token is None:
            return _error("read API disabled: set http.token_file in the config", 403)
        given = request.headers.get("Authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            response = jsonify(error="missing or wrong bearer token")
            response.headers["WWW-Authenticate"] = 'Bearer realm="cultivai-bridge"'
            return response, 401
        return None

    @app.after_request
    def _headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        if origins:
            response.vary.add("Origin")
            origin = request.headers.get("Origin")
            if origin is not None and origin.lower() in origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = "Retry-After"
        return response
