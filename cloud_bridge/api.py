"""The fleet read API, health checks and metrics (Flask; served by waitress).

Every route is GET-only and reads; the API writes nothing to the fleet's tables (the
shared rate limit, cloud_bridge.guard, keeps its budgets in a table of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from flask import Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from cloud_bridge.database import is_transient
from cloud_bridge.decode import DEVICE_ID, safe_text
from cloud_bridge.guard import Limiter, install_guard
from cloud_bridge.queries import AlertState, FleetReader

Check = Callable[[], str | None]
"""A readiness check: None when fine, else what is wrong."""

MAX_LIMIT = 1000
MAX_TEXT_ARG = 200
STATES: tuple[AlertState, ...] = ("raised", "cleared", "open")


class BadQuery(ValueError):
    """A query parameter has a value the API cannot use."""


def _datetime_arg(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        if not raw.isascii() or not raw.isprintable():
            raise ValueError  # fromisoformat lets a NUL through as a separator
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"{name}: expected an ISO 8601 time such as 2026-03-02T08:00:00Z") from None
    if value.tzinfo is None:
        raise BadQuery(f"{name}: give a time zone (Z or +01:00)")
    try:
        # An offset can push a valid local time past year 1..9999 in UTC: the driver's
        # OverflowError would be a 500, so convert here.
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise BadQuery(f"{name}: out of range (years 1 to 9999 in UTC)") from None


def _text_arg(name: str) -> str | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if len(raw) > MAX_TEXT_ARG or not raw.isprintable():
        # PostgreSQL text cannot hold NUL; no stored name has control characters.
        raise BadQuery(f"{name}: at most {MAX_TEXT_ARG} printable characters")
    return raw


def _int_arg(name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"{name}: expected a whole number") from None
    if not low <= value <= high:
        raise BadQuery(f"{name}: must be between {low} and {high}")
    return value


def _bool_arg(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise BadQuery(f"{name}: expected true or false")


def _state_arg() -> AlertState | None:
    raw = request.args.get("state")
    if raw is None:
        return None
    for state in STATES:
        if raw == state:
            return state
    raise BadQuery("state: expected raised, cleared or open")


def create_app(
    reader: FleetReader,
    checks: Mapping[str, Check],
    registry: CollectorRegistry,
    token: str | None,
    limiter: Limiter,
    cors_origins: Iterable[str] = (),
    max_request_bytes: int = 16_384,
    max_url_bytes: int = 8192,
    details: Callable[[], dict[str, Any]] | None = None,
) -> Flask:
    """The Flask app; `checks` (and `details`, e.g. replica lag) feed /readyz."""
    app = Flask("cloud_bridge")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_guard(app, token, limiter, cors_origins, max_request_bytes, max_url_bytes)

    @app.errorhandler(BadQuery)
    def _bad_query(exc: BadQuery) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 400

    @app.errorhandler(SQLAlchemyError)
    def _database_error(exc: SQLAlchemyError) -> tuple[Response, int]:
        if is_transient(exc):
            return jsonify(error="database unavailable; try again shortly"), 503
        app.logger.error("query failed: %s", exc)
        return jsonify(error="internal error"), 500

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        response = jsonify(error=exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value  # Allow on a 405, for one
        return response, exc.code or 500

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok")

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        problems = {name: check() for name, check in checks.items()}
        body = {name: problem or "ok" for name, problem in problems.items()}
        ready = not any(problems.values())
        extra = details() if details is not None else {}
        return jsonify(status="ready" if ready else "not ready", checks=body, **extra), (
            200 if ready else 503
        )

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/devices")
    def devices() -> Response:
        found = reader.devices(_text_arg("site"), _text_arg("room"), _bool_arg("online"))
        return jsonify(devices=found)

    @app.get("/api/v1/devices/<device_id>")
    def device(device_id: str) -> tuple[Response, int]:
        found = reader.device(device_id) if DEVICE_ID.fullmatch(device_id) else None
        if found is None:
            return jsonify(error=f"no device {safe_text(device_id, 80)!r}"), 404
        return jsonify(found), 200

    @app.get("/api/v1/devices/<device_id>/observations")
    def observations(device_id: str) -> tuple[Response, int]:
        since = _datetime_arg("since")
        after_seq = _int_arg("after_seq", None, 0, 2**63 - 1)
        limit = _int_arg("limit", 100, 1, MAX_LIMIT)
        assert limit is not None
        if not DEVICE_ID.fullmatch(device_id) or reader.device(device_id) is None:
            return jsonify(error=f"no device {safe_text(device_id, 80)!r}"), 404
        items, next_after = reader.observations(device_id, since, after_seq, limit)
        body: dict[str, Any] = {
            "device_id": device_id,
            "observations": items,
            "next_after_seq": next_after,
        }
        return jsonify(body), 200

    @app.get("/api/v1/alerts")
    def alerts() -> Response:
        limit = _int_arg("limit", 100, 1, MAX_LIMIT)
        assert limit is not None
        found = reader.alerts(
            _text_arg("device_id"),
            _text_arg("site"),
            _text_arg("room"),
            _state_arg(),
            _datetime_arg("since"),
            limit,
        )
        return jsonify(alerts=found)

    @app.get("/api/v1/fleet/summary")
    def fleet_summary() -> Response:
        return jsonify(rooms=reader.fleet_summary())

    return app
