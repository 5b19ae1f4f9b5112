"""Signing in and out of the page."""

from __future__ import annotations

import logging
import math
from urllib.parse import unquote, urlsplit

from flask import (
    Blueprint,
    abort,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response

from edge.web.auth import client_address
from edge.web.context import web

log = logging.getLogger(__name__)
bp = Blueprint("login", __name__)
MAX_NEXT_CHARS = 2000


def safe_next(target: str | None) -> str:
    """Where to go after login: a path on this site only, never another host."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return url_for("pages.status")
    # A CR/LF or other control character would be a header of its own, or a path no
    # page has: fall back rather than echo it into Location.
    if len(target) > MAX_NEXT_CHARS or any(c < " " or c in "\x7f\\" for c in unquote(target)):
        return url_for("pages.status")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return url_for("pages.status")
    return target


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str:
    """The login form; a good password starts a session, failures are rate limited."""
    gate = web().gate
    target = safe_next(request.values.get("next"))
    if request.method == "GET":
        if gate.logged_in():
            return redirect(target)
        return render_template("login.html", next=target)
    client = client_address()
    # Counted before the (slow) check, so parallel guesses cannot all slip through.
    wait = gate.limiter.begin(client)
    if wait > 0:
        log.warning("login refused: too many failures", extra={"client": client})
        minutes = math.ceil(wait / 60)
        page = render_template(
            "login.html",
            next=target,
            error=f"Too many wrong passwords. Try again in {minutes} min.",
        )
        response = make_response(page, 429)
        response.headers["Retry-After"] = str(math.ceil(wait))
        return response
    if not gate.password_ok(request.form.get("password", "")):
        log.warning("login failed: wrong password", extra={"client": client})
        page = render_template("login.html", next=target, error="Wrong password.")
        return make_response(page, 401)
    gate.limiter.succeeded(client)
    gate.log_in()
    log.info("login", extra={"client": client})
    return redirect(target, code=303)


@bp.post("/logout")
def logout() -> Response:
    """End the session, on the device too: the old cookie opens nothing afterwards."""
    web().gate.log_out()
    return redirect(url_for("login.login"), code=303)


@bp.get("/sessions")
def sessions() -> str:
    """The browsers signed in to this device, each with a button to sign it out."""
    gate = web().gate
    return render_template(
        "sessions.html", sessions=gate.sessions.active(), current=gate.current_ref()
    )


@bp.post("/sessions/<ref>/revoke")
def revoke(ref: str) -> Response:
    """Sign out one browser (yours included)."""
    gate = web().gate
    if not gate.sessions.revoke_ref(ref):
        abort(404)
    log.info("session revoked", extra={"client": client_address()})
    if ref == gate.current_ref():
        session.clear()
        return redirect(url_for("login.login"), code=303)
    return redirect(url_for("login.sessions"), code=303)
