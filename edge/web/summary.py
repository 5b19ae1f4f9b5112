"""The device at a glance: what the status page and /api/v1/status both show."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.protocol import Observation
from edge.tables import AlertRow
from edge.web import queries
from edge.web.context import WebContext
from edge.web.device import DeviceStatus


@dataclass(frozen=True, slots=True)
class Summary:
    """Latest observation, open alerts and device health, read once per request."""

    now: datetime
    device: DeviceStatus
    latest: Observation | None
    latest_has_photo: bool
    latest_has_overlay: bool
    alerts: list[AlertRow]
    observations: int
    photos: int  # -1: not counted
    photo_bytes: int
    images_pruned: int
    outbox_depth: int
    disk_free_bytes: int | None
    disk_total_bytes: int | None

    @property
    def device_id(self) -> str:
        """The device's id, from the agent or else from its latest observation."""
        if "device_id" in self.device:
            return self.device["device_id"]
        return self.latest.device_id if self.latest else "device"

    @property
    def uptime_s(self) -> float | None:
        """Seconds since the agent started."""
        started = self.device.get("started_at")
        return None if started is None else (self.now - started).total_seconds()


def read_summary(ctx: WebContext, with_photos: bool = True) -> Summary:
    """Gather the summary from the store, the data folder and the device."""
    held = queries.counts(ctx.store, with_photos)
    latest = queries.latest(ctx.store)
    free: int | None
    total: int | None
    try:
        disk = shutil.disk_usage(ctx.data_dir)
        free, total = int(disk.free), int(disk.total)
    except OSError:
        free = total = None
    return Summary(
        now=ctx.now(),
        device=ctx.device.status(),
        latest=latest.observation if latest else None,
        latest_has_photo=latest is not None and latest.has_photo,
        latest_has_overlay=latest is not None and latest.has_overlay,
        alerts=list(reversed(ctx.store.open_alerts())),
        observations=held.observations,
        photos=held.photos,
        photo_bytes=held.photo_bytes,
        images_pruned=ctx.store.images_pruned,
        outbox_depth=held.outbox_depth,
        disk_free_bytes=free,
        disk_total_bytes=total,
    )


def summary_json(s: Summary) -> dict[str, Any]:
    """The summary as the JSON of /api/v1/status."""
    d = s.device
    return {
        "device": {
            "id": s.device_id,
            "site": d.get("site"),
            "room": d.get("room"),
            "firmware": d.get("firmware"),
        },
        "now": s.now.isoformat(),
        "uptime_s": s.uptime_s,
        "disk": {"free_bytes": s.disk_free_bytes, "total_bytes": s.disk_total_bytes},
        "cpu_temp_c": d.get("cpu_temp_c"),
        "broker_connected": d.get("broker_connected"),
        "outbox_depth": s.outbox_depth,
        "model": {
            "name": d.get("model_name"),
            "version": d.get("model_version"),
            "backend": d.get("model_backend"),
            "error": d.get("model_error"),
        },
        "camera_open": d.get("camera_open"),
        "last_capture_at": _iso(d.get("last_capture_at")),
        "last_error": d.get("last_error"),
        "counts": {
            "observations": s.observations,
            "photos": s.photos,
            "photo_bytes": s.photo_bytes,
            "images_pruned": s.images_pruned,
            "captures_ok": d.get("captures_ok"),
            "captures_failed": d.get("captures_failed"),
            "skipped_dark": d.get("skipped_dark"),
        },
        "latest": s.latest.model_dump(mode="json") if s.latest else None,
        "alerts": [
            {
                "alert_id": a.id,
                "kind": a.kind,
                "label": a.label,
                "message": a.message,
                "value": a.value,
                "baseline": a.baseline,
                "raised_at": _iso(queries.utc(a.raised_at)),
                "raised_seq": a.raised_seq,
            }
            for a in s.alerts
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
