"""Machine-readable endpoints: JSON API, photos, liveness, readiness, Prometheus metrics."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, abort, jsonify, request, send_file
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from edge.errors import ImageDecodeError
from edge.web import queries
from edge.web.context import web
from edge.web.images import SIZES
from edge.web.summary import read_summary, summary_json

log = logging.getLogger(__name__)
bp = Blueprint("api", __name__)
DEFAULT_LIMIT, MAX_LIMIT = 100, 1000
PHOTO_MAX_AGE_S = 7 * 86400


@bp.get("/healthz")
def healthz() -> Response:
    """Liveness: the web server answers (no login, no database)."""
    return jsonify(ok=True)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Readiness: the database answers and the camera is open."""
    ctx = web()
    checks: dict[str, str] = {}
    try:
        queries.last_seq(ctx.store)
        checks["database"] = "ok"
    except Exception as exc:  # any failure means not ready; the detail goes to the log
        log.error("readiness: database check failed", extra={"error": str(exc)})
        checks["database"] = "error"
    device = ctx.device.status()
    checks["camera"] = "ok" if device.get("camera_open", True) else "error"
    checks["workers"] = "ok" if device.get("workers_up", True) else "error"
    ready = all(v == "ok" for v in checks.values())
    body = jsonify(ready=ready, checks=checks, problems=device.get("worker_problems", []))
    return body, 200 if ready else 503


@bp.get("/metrics")
def metrics() -> Response:
    """The agent's Prometheus metrics."""
    body = generate_latest(web().metrics.registry)
    return Response(body, mimetype=None, content_type=CONTENT_TYPE_LATEST)


@bp.get("/api/v1/status")
def status() -> Response:
    """Device health, latest observation and open alerts."""
    return jsonify(summary_json(read_summary(web())))


@bp.get("/api/v1/observations")
def observations() -> Response | tuple[Response, int]:
    """Observations in seq order: `since` (ISO 8601) and/or `after_seq`, up to `limit`."""
    try:
        since = _parse_since(request.args.get("since"))
        after_seq = _int(request.args.get("after_seq"), "after_seq")
        asked = _int(request.args.get("limit"), "limit")
    except ValueError as exc:
        return jsonify(error=str(exc)), 400
    limit = DEFAULT_LIMIT if asked is None else asked
    if not 1 <= limit <= MAX_LIMIT:
        return jsonify(error=f"limit must be 1..{MAX_LIMIT}"), 400
    found = queries.observations_page(web().store, since, after_seq, limit)
    body: dict[str, Any] = {"observations": [o.model_dump(mode="json") for o in found]}
    if found and len(found) == limit:
        body["next_after_seq"] = found[-1].seq
    return jsonify(body)


def _int(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value) if len(value) <= 20 else queries.SEQ_MAX + 1
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {value[:40]!r}") from None
    if not -queries.SEQ_MAX <= number <= queries.SEQ_MAX:
        raise ValueError(f"{name} must be between {-queries.SEQ_MAX} and {queries.SEQ_MAX}")
    return number


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        if not value.isascii() or not value.isprintable():
            raise ValueError  # fromisoformat lets a NUL through as a separator
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"since must be an ISO 8601 time, got {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ValueError("since needs a time zone, e.g. 2026-03-02T08:00:00Z")
    try:
        # Converted here, where an offset that pushes it past year 1..9999 is a clear 400.
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("since is out of range (years 1 to 9999 in UTC)") from None


@bp.get("/api/v1/images/<int:seq>")
def image(seq: int) -> Response:
    """A stored photo; `overlay=1` for the plant mask, `size=thumb|medium` for a smaller copy."""
    if seq > queries.SEQ_MAX:
        abort(404)
    ctx = web()
    overlay = request.args.get("overlay") == "1"
    size = request.args.get("size")
    if size is not None and size not in SIZES:
        abort(404)
    path = ctx.store.image_path(seq, overlay=overlay)
    if path is None:
        abort(404)
    try:
        if size is None:
            response = send_file(path, mimetype="image/jpeg", conditional=True, etag=True)
        else:
            data = ctx.resized.get(path, SIZES[size])
            response = Response(data, mimetype="image/jpeg")
    except FileNotFoundError:
        abort(404)  # pruned between the query and the read
    except (OSError, ImageDecodeError) as exc:
        log.error("stored photo unreadable", extra={"seq": seq, "error": str(exc)})
        abort(404)
    # A seq's photo never changes: let the phone keep it, but no shared cache.
    response.headers["Cache-Control"] = f"private, max-age={PHOTO_MAX_AGE_S}, immutable"
    return response
