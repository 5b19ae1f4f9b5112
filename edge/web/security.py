"""Security headers on every response and the per-session CSRF token."""

from __future__ import annotations

import hmac
import secrets

from flask import Response, request, session
from werkzeug.exceptions import BadRequest

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HSTS = "max-age=31536000"


class CsrfError(BadRequest):
    """A form was posted without this session's CSRF token (stale page, or forged)."""


def csrf_token() -> str:
    """This session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok() -> bool:
    """True when a state-changing request carries this session's token."""
    if request.method not in UNSAFE_METHODS:
        return True
    expected = session.get("csrf")
    sent = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    return isinstance(expected, str) and hmac.compare_digest(expected, sent)


def add_security_headers(response: Response, tls: bool) -> Response:
    """Lock the response down: no framing, no sniffing, no referrer, no foreign code."""
    h = response.headers
    h["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    h["X-Content-Type-Options"] = "nosniff"
    h["X-Frame-Options"] = "DENY"
    h["Referrer-Policy"] = "no-referrer"
    h["Cross-Origin-Opener-Policy"] = "same-origin"
    h["Cross-Origin-Resource-Policy"] = "same-origin"
    h["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
    if tls:
        h["Strict-Transport-Security"] = HSTS
    # Pages and API answers are private; photos and static files set their own caching.
    h.setdefault("Cache-Control", "no-store")
    return response
