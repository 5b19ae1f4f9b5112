"""What templates can call: asset URLs, the CSRF token, filters for times and numbers."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import flask
from flask import url_for

from edge.web import formatting
from edge.web.context import web
from edge.web.security import csrf_token

STATIC = Path(__file__).resolve().parent / "static"


def install_template_helpers(app: flask.Flask) -> None:
    """Register the globals, filters and context the templates use."""
    fingerprints = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10]
        for p in STATIC.iterdir()
        if p.is_file()
    }

    def asset(name: str) -> str:
        # A changed file gets a new URL, so static files can be cached for a year.
        return url_for("static", filename=name, v=fingerprints.get(name, "0"))

    def local(when: object, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if not isinstance(when, datetime):
            return "–"
        return web().local(when).strftime(fmt)

    def device_name() -> dict[str, str]:
        try:
            name = web().device.status().get("device_id")
        except Exception:  # the error page must render even when the agent cannot answer
            name = None
        return {"device_name": name or "CultivAI"}

    app.context_processor(device_name)
    app.jinja_env.globals.update(
        asset=asset,
        csrf_token=csrf_token,
        logged_in=lambda: web().gate.logged_in(),
    )
    app.jinja_env.filters.update(
        ago=lambda when: formatting.ago(when, web().now()),
        duration=formatting.duration,
        size=formatting.size,
        pct=formatting.pct,
        label=formatting.label,
        local=local,
    )
