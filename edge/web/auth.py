"""Who may in: the page password (one user), failed-login limits, the metrics token."""

from __future__ import annotations

import hashlib
import hmac
import threading
from datetime import timedelta

from flask import request, session
from sqlalchemy import Engine

from edge.web.password import verify_password
from edge.web.ratelimit import LoginLimiter
from edge.web.sessions import WebSessions

# Each argon2 check takes 19 MiB; a burst of logins must not exhaust a Pi Zero.
_CONCURRENT_CHECKS = 2


class Gate:
    """Checks passwords, keeps logins as server-side sessions, checks bearer tokens."""

    def __init__(
        self,
        password_hash: str,
        limiter: LoginLimiter,
        metrics_token: str | None,
        engine: Engine,
        session_lifetime: timedelta,
    ) -> None:
        self._password_hash = password_hash
        self.limiter = limiter
        self._metrics_token = metrics_token
        self._checks = threading.BoundedSemaphore(_CONCURRENT_CHECKS)
        # Sessions name the hash they were granted under: a new password logs everyone out.
        self._grant = hashlib.sha256(password_hash.encode()).hexdigest()[:32]
        self.sessions = WebSessions(engine, self._grant, session_lifetime)

    def password_ok(self, password: str) -> bool:
        """True when `password` is the page password."""
        with self._checks:
            return verify_password(self._password_hash, password)

    def logged_in(self) -> bool:
        """True when this request's cookie names a live server-side session."""
        token = session.get("sid")
        return isinstance(token, str) and self.sessions.valid(token)

    def current_ref(self) -> str | None:
        """The public handle of this request's session, if signed in."""
        token = session.get("sid")
        return WebSessions.ref_of(token) if isinstance(token, str) else None

    def log_in(self) -> None:
        """Start a fresh session for a good login (never reuse the pre-login one)."""
        session.clear()
        session.permanent = True
        agent = request.headers.get("User-Agent", "")
        session["sid"] = self.sessions.create(client_address(), agent)

    def log_out(self) -> None:
        """Revoke this request's session on the device and clear the cookie."""
        token = session.get("sid")
        if isinstance(token, str):
            self.sessions.revoke(token)
        session.clear()

    @property
    def has_metrics_token(self) -> bool:
        """True when scrapers may use a bearer token."""
        return self._metrics_token is not None

    def metrics_token_ok(self) -> bool:
        """True when the request carries the configured bearer token."""
        if self._metrics_token is None:
            return False
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            sent.strip().encode(), self._metrics_token.encode()
        )


def client_address() -> str:
    """The client's address (the proxy's X-Forwarded-For is applied before this)."""
    return request.remote_addr or "unknown"
