"""What stands in front of every request: bearer token, rate limit, security headers."""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable

from flask import Flask, Response, jsonify, request

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class RateLimiter:
    """A token bucket per client address: `per_minute` requests, refilled evenly."""

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


def install_guard(app: Flask, token: str | None, limiter: RateLimiter) -> None:
    """Require the bearer token (except on health checks), limit rates, add headers."""

    @app.before_request
    def _check() -> Response | tuple[Response, int] | None:
        if request.path in OPEN_PATHS:
            return None
        wait = limiter.allow(request.remote_addr or "unknown")
        if wait > 0:
            response = jsonify(error="too many requests")
            response.headers["Retry-After"] = str(max(1, round(wait)))
            return response, 429
        if token is None:
            return jsonify(error="read API disabled: set http.token_file in the config"), 403
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
        return response
