"""The time-lapse as a video file to download: made on request, kept until a new photo."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone, tzinfo
from pathlib import Path

from flask import abort, request, send_file
from werkzeug.wrappers import Response

from edge.timelapse import Per, TimelapseError, make_timelapse
from edge.web import queries
from edge.web.context import web

log = logging.getLogger(__name__)
FOLDER = "timelapse"
BEGINNING = datetime(2000, 1, 1, tzinfo=timezone.utc)
# One encode at a time per device: it is CPU work the capture loop shares.
_encoding = threading.Lock()


def download() -> Response | tuple[str, int, dict[str, str]]:
    """The whole grow as MP4 (`all=1`: every photo, else one a day), reused until a new photo."""
    ctx = web()
    per: Per = "capture" if request.args.get("all") == "1" else "day"
    last = queries.last_seq(ctx.store)
    folder = ctx.data_dir / FOLDER
    out = folder / f"grow-{per}-{last}.mp4"
    if not out.exists():
        if not _encoding.acquire(blocking=False):
            return "A time-lapse is being made; try again in a minute.", 503, {"Retry-After": "30"}
        try:
            _build(out, per, ctx.now(), ctx.zone())
        except TimelapseError as exc:
            log.info("no time-lapse to download", extra={"reason": str(exc)})
            abort(404)
        finally:
            _encoding.release()
    name = f"timelapse-{per}-{ctx.local(ctx.now()).date().isoformat()}.mp4"
    return send_file(out, mimetype="video/mp4", as_attachment=True, download_name=name)


def _build(out: Path, per: Per, now: datetime, zone: tzinfo) -> None:
    out.parent.mkdir(exist_ok=True)
    for old in out.parent.glob(f"grow-{per}-*.mp4"):
        old.unlink(missing_ok=True)
    store = web().store
    result = make_timelapse(store, BEGINNING, now, out, per=per, tz=zone)
    log.info("time-lapse made for download", extra={"summary": result.summary()})
