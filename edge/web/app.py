"""The Flask app: locked by default, secure headers everywhere, friendly error pages."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import flask
from flask import jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Response

from edge.clock import Clock, SystemClock
from edge.metrics import AgentMetrics
from edge.store import Store
from edge.web import api, login, pages
from edge.web.auth import Gate
from edge.web.context import EXTENSION, WebContext, web
from edge.web.device import DeviceView
from edge.web.images import ResizedCache
from edge.web.keys import load_password_hash, load_session_key, read_token
from edge.web.ratelimit import LoginLimiter
from edge.web.security import CsrfError, add_security_headers, csrf_ok
from edge.web.settings import WebConfig
from edge.web.templating import install_template_helpers

log = logging.getLogger(__name__)
PUBLIC = frozenset({"static", "api.healthz", "login.login"})
FOR_SCRAPERS = frozenset({"api.metrics", "api.readyz"})
MACHINE_PREFIXES = ("/api/", "/metrics", "/readyz", "/healthz")


def create_app(
    settings: WebConfig,
    data_dir: Path,
    store: Store,
    device: DeviceView,
    metrics: AgentMetrics,
    clock: Clock | None = None,
    timezone: str | None = None,
) -> flask.Flask:
    """Build the page's app; creates the session key (and a password) on first start.

    `timezone` (IANA name, usually `schedule.timezone`) is the zone dates are shown
    and grouped by day in; None uses the device's zone.
    """
    app = flask.Flask(__name__)
    app.config.update(
        SECRET_KEY=load_session_key(data_dir),
        SESSION_COOKIE_NAME="cultivai_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=settings.behind_tls_proxy,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        MAX_CONTENT_LENGTH=64 * 1024,
        SEND_FILE_MAX_AGE_DEFAULT=timedelta(days=365),
    )
    app.json.sort_keys = False  # type: ignore[attr-defined]
    token = read_token(settings.metrics_token_file) if settings.metrics_token_file else None
    gate = Gate(
        load_password_hash(settings.password_hash, data_dir),
        LoginLimiter(settings.login_attempts, settings.login_window_s),
        token,
        store.engine,
        timedelta(hours=settings.session_hours),
    )
    app.extensions[EXTENSION] = WebContext(
        settings=settings,
        data_dir=data_dir,
        store=store,
        device=device,
        metrics=metrics,
        clock=clock or SystemClock(),
        tz=ZoneInfo(timezone) if timezone else None,
        gate=gate,
        resized=ResizedCache(),
    )
    for blueprint in (pages.bp, login.bp, api.bp):
        app.register_blueprint(blueprint)
    install_template_helpers(app)
    app.before_request(_guard)
    tls = settings.behind_tls_proxy
    app.after_request(lambda response: add_security_headers(response, tls))
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    if settings.behind_tls_proxy:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)  # type: ignore[method-assign]
    return app


def _guard() -> Response | tuple[Response, int] | None:
    """CSRF on every POST, then a login (or the scrape token) for all but public routes."""
    if not csrf_ok():
        log.warning("form refused: missing or stale CSRF token", extra={"path": request.path})
        raise CsrfError()
    endpoint = request.endpoint or ""
    gate = web().gate
    if endpoint in PUBLIC or gate.logged_in():
        return None
    if endpoint in FOR_SCRAPERS and gate.metrics_token_ok():
        return None
    if request.path.startswith(MACHINE_PREFIXES):
        response = jsonify(error="login required")
        if endpoint in FOR_SCRAPERS and gate.has_metrics_token:
            response.headers["WWW-Authenticate"] = 'Bearer realm="cultivai"'
        return response, 401
    return redirect(url_for("login.login", next=request.full_path.rstrip("?")))


def _http_error(exc: HTTPException) -> Response | tuple[Response | str, int]:
    code = exc.code or 500
    if request.path.startswith(MACHINE_PREFIXES):
        return jsonify(error=(exc.name or "error").lower()), code
    if isinstance(exc, CsrfError):
        title, message = "Form expired", "The form was stale. Go back, reload and try again."
    elif code == 404:
        title, message = "Not found", "There is nothing here; the photo may have been pruned."
    else:
        title, message = exc.name or "Error", "The request could not be served."
    return render_template("error.html", code=code, title=title, message=message), code


def _unexpected_error(exc: Exception) -> tuple[Response | str, int]:
    ref = secrets.token_hex(4)
    log.exception("page failed", extra={"path": request.path, "ref": ref})
    if request.path.startswith(MACHINE_PREFIXES):
        return jsonify(error="internal error", ref=ref), 500
    message = f"Something went wrong on the device. The log has the details (ref {ref})."
    return render_template("error.html", code=500, title="Error", message=message), 500
