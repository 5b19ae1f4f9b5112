"""Who may in: the page password (one user), failed-login limits, the metrics token."""

from __future__ import annotations

import hashlib
import hmac
import threading

from flask import request, session

from edge.web.password import verify_password
from edge.web.ratelimit import LoginLimiter

# Each argon2 check takes 19 MiB; a burst of logins must not exhaust a Pi Zero.
_CONCURRENT_CHECKS = 2


class Gate:
    """Checks passwords, remembers logins in the signed session, checks bearer tokens."""

    def __init__(
        self, password_hash: str, limiter: LoginLimiter, metrics_token: str | None
    ) -> None:
        self._password_hash = password_hash
        self.limiter = limiter
        self._metrics_token = metrics_token
        self._checks = threading.BoundedSemaphore(_CONCURRENT_CHECKS)
        # Sessions name the hash they were granted under: a new password logs everyone out.
        self._grant = hashlib.sha256(password_hash.encode()).hexdigest()[:32]

    def password_ok(self, password: str) -> bool:
        """True when `password` is the page password."""
        with self._checks:
            return verify_password(self._password_hash, password)

    def logged_in(self) -> bool:
        """True when this request's session holds a current login."""
        grant = session.get("auth")
        return isinstance(grant, str) and hmac.compare_digest(grant, self._grant)

    def log_in(self) -> None:
        """Start a fresh session for a good login (never reuse the pre-login one)."""
        session.clear()
        session.permanent = True
        session["auth"] = self._grant

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
