"""The grower's pages: status, history, photos by day, one photo, time-lapse, capture now."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta

from flask import Blueprint, abort, redirect, render_template, request, url_for
from markupsafe import Markup
from werkzeug.wrappers import Response

from edge.errors import CultivaiError
from edge.web import queries, video
from edge.web.charts import Line, line_chart
from edge.web.context import web
from edge.web.summary import read_summary

log = logging.getLogger(__name__)
bp = Blueprint("pages", __name__)
RANGES = {"day": timedelta(days=1), "week": timedelta(days=7), "grow": None}
CHART_BUCKETS = 200
CAPTURE_WAIT_S = 60
MAX_TIMELAPSE_FRAMES = 1000
EMPTY_NOTICES = ("taken", "failed")  # the outcomes of "Capture empty scene" the page reports


@bp.get("/")
def status() -> str:
    """Latest photo, health verdict, canopy metrics, open alerts and device health."""
    ctx = web()
    summary = read_summary(ctx, with_photos=False)
    waiting = _waiting_for_capture(summary.latest.seq if summary.latest else 0)
    empty = request.args.get("empty")
    return render_template(
        "status.html", s=summary, waiting=waiting, empty=empty if empty in EMPTY_NOTICES else None
    )


def _waiting_for_capture(latest_seq: int) -> bool:
    """True while a requested capture has not shown up yet (the page refreshes itself)."""
    after = request.args.get("after", type=int)
    since = request.args.get("t", type=float)
    if after is None or since is None:
        return False
    return latest_seq <= after and time.time() - since < CAPTURE_WAIT_S


@bp.post("/capture")
def capture() -> Response:
    """Ask the agent for a photo now, then show the status page until it arrives."""
    ctx = web()
    last = queries.last_seq(ctx.store)
    ctx.device.request_capture()
    log.info("capture requested from the status page", extra={"client": request.remote_addr})
    return redirect(url_for("pages.status", after=last, t=f"{time.time():.0f}"), code=303)


@bp.post("/baseline/reset")
def reset_baseline() -> Response:
    """A new grow starts: the next captures set a new baseline for drift."""
    web().device.reset_baseline()
    log.info("grow baseline reset from the status page", extra={"client": request.remote_addr})
    return redirect(url_for("pages.status"), code=303)


@bp.post("/background/empty")
def capture_empty_scene() -> Response:
    """Photograph the scene with the plants out of view; it is the background from now on."""
    ctx = web()
    try:
        ctx.device.capture_empty_scene()
    except CultivaiError as exc:
        log.error("empty scene not captured", extra={"error": str(exc)})
        return redirect(url_for("pages.status", empty="failed"), code=303)
    log.info("empty scene captured from the status page", extra={"client": request.remote_addr})
    return redirect(url_for("pages.status", empty="taken"), code=303)


@bp.get("/history")
def history() -> str:
    """Cover, yellowing/browning and model confidence over a day, a week or the grow."""
    ctx = web()
    # The grow by default: a new grow's first hours would be a single dot on a week's axis.
    chosen = request.args.get("range", "grow")
    if chosen not in RANGES:
        chosen = "grow"
    end = ctx.now()
    span = RANGES[chosen]
    if span is None:
        first = queries.first_captured_at(ctx.store)
        start = min(first, end - timedelta(hours=1)) if first else end - timedelta(days=1)
    else:
        start = end - span
    points = queries.series(ctx.store, start, end, CHART_BUCKETS)
    times = [p.at for p in points]

    def chart(
        title: str, lines: list[Line], y_max: float | None = None, at: list[datetime] | None = None
    ) -> Markup:
        at = times if at is None else at
        return line_chart(title, at, lines, start, end, ctx.local, y_max=y_max)

    charts = [
        (
            "Canopy cover",
            "Share of the photo that is plant.",
            chart("Canopy cover", [Line("cover", "Cover", [p.cover_pct for p in points])]),
            [("cover", "Cover")],
        ),
        (
            "Yellowing and browning",
            "Chlorotic (yellow) and necrotic (brown) share of the plant.",
            chart(
                "Yellowing and browning",
                [
                    Line("yellow", "Yellow", [p.yellow_pct for p in points]),
                    Line("brown", "Brown", [p.brown_pct for p in points]),
                ],
            ),
            [("yellow", "Yellow"), ("brown", "Brown")],
        ),
        (
            "Plant-health model",
            "Confidence of the model's verdict, and the share of photos it called healthy.",
            chart(
                "Plant-health model",
                [
                    Line("confidence", "Confidence", [_pct(p.health_confidence) for p in points]),
                    Line("healthy", "Healthy", [_pct(p.healthy_share) for p in points]),
                ],
                y_max=100.0,
            ),
            [("confidence", "Confidence"), ("healthy", "Called healthy")],
        ),
    ]
    charts += _climate_charts(queries.climate_series(ctx.store, start, end, CHART_BUCKETS), chart)
    observations = sum(p.count for p in points)
    return render_template(
        "history.html",
        ranges=list(RANGES),
        chosen=chosen,
        charts=charts,
        observations=observations,
        start=ctx.local(start),
        end=ctx.local(end),
    )


def _climate_charts(
    points: list[queries.ClimatePoint], draw: Callable[..., Markup]
) -> list[tuple[str, str, Markup, list[tuple[str, str]]]]:
    """Temperature and VPD charts, when any capture in the range had climate sensors."""
    if not any(p.air_temp_c is not None or p.leaf_temp_c is not None for p in points):
        return []
    times = [p.at for p in points]
    legend = [("air", "Air"), ("leaf", "Leaf")]
    return [
        (
            "Temperature",
            "Air and leaf temperature, °C.",
            draw(
                "Temperature",
                [
                    Line("air", "Air", [p.air_temp_c for p in points]),
                    Line("leaf", "Leaf", [p.leaf_temp_c for p in points]),
                ],
                at=times,
            ),
            legend,
        ),
        (
            "VPD",
            "Vapour pressure deficit of the air and from leaf to air, kPa.",
            draw(
                "VPD",
                [
                    Line("air", "Air", [p.air_vpd_kpa for p in points]),
                    Line("leaf", "Leaf", [p.leaf_vpd_kpa for p in points]),
                ],
                at=times,
            ),
            legend,
        ),
    ]


def _pct(share: float | None) -> float | None:
    return None if share is None else share * 100


@bp.get("/photos")
def photo_days() -> str:
    """Days that have photos, newest first."""
    ctx = web()
    return render_template("photo_days.html", days=queries.photo_days(ctx.store, ctx.zone()))


@bp.get("/photos/<day>")
def photos_of_day(day: str) -> str:
    """Thumbnails of one day's photos."""
    ctx = web()
    try:
        wanted = date.fromisoformat(day)
    except ValueError:
        abort(404)
    refs = queries.photos_on(ctx.store, wanted, ctx.zone())
    if not refs:
        abort(404)
    return render_template("photo_day.html", day=wanted, photos=refs)


@bp.get("/photo/<int:seq>")
def photo(seq: int) -> str:
    """One photo with its plant mask and measurements."""
    if seq > queries.SEQ_MAX:  # no such seq can be stored, and SQLite cannot even compare it
        abort(404)
    ctx = web()
    obs = ctx.store.get(seq)
    if obs is None:
        abort(404)
    has_photo = ctx.store.image_path(seq) is not None
    has_overlay = ctx.store.image_path(seq, overlay=True) is not None
    before, after = queries.photo_neighbours(ctx.store, seq)
    return render_template(
        "photo.html",
        obs=obs,
        has_photo=has_photo,
        has_overlay=has_overlay,
        before=before,
        after=after,
    )


bp.add_url_rule("/timelapse/video", "timelapse_video", video.download)


@bp.get("/timelapse")
def timelapse() -> str:
    """The grow as a sequence of photos: a script plays it, links step through it without."""
    ctx = web()
    every_photo = request.args.get("all") == "1"
    frames = queries.timelapse_frames(
        ctx.store, ctx.zone(), per_day=not every_photo, max_frames=MAX_TIMELAPSE_FRAMES
    )
    index = request.args.get("frame", default=len(frames) - 1, type=int)
    index = min(max(index, 0), max(len(frames) - 1, 0))
    fmt = "%Y-%m-%d %H:%M" if every_photo else "%Y-%m-%d"
    labels = [ctx.local(f.captured_at).strftime(fmt) for f in frames]
    data = json.dumps(
        [[f.seq, label] for f, label in zip(frames, labels, strict=True)], separators=(",", ":")
    )
    return render_template(
        "timelapse.html",
        frames=frames,
        labels=labels,
        index=index,
        every_photo=every_photo,
        frames_json=data,
        frame_src=url_for("api.image", seq=0, size="medium").replace("/0?", "/{seq}?"),
    )
