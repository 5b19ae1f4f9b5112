"""The fleet views the read API serves, as read-only queries (JSON-ready dicts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, and_, exists, func, select, true
from sqlalchemy.orm import Session, aliased

from cloud_bridge.tables import AlertRow, Device, ObservationKey, ObservationRow

AlertState = Literal["raised", "cleared", "open"]
"""Alert filter: "open" means raised and not cleared since."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


class FleetReader:
    """Read-only access to the fleet database (PostgreSQL enforces it per transaction)."""

    def __init__(self, engine: Engine) -> None:
        self.dialect = engine.dialect.name
        self.engine = (
            engine.execution_options(postgresql_readonly=True)
            if engine.dialect.name == "postgresql"
            else engine
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for one request."""
        with Session(self.engine) as session:
            yield session

    def devices(
        self, site: str | None = None, room: str | None = None, online: bool | None = None
    ) -> list[dict[str, Any]]:
        """Every device, optionally filtered by site, room and online state."""
        query = select(Device).order_by(Device.site, Device.room, Device.id)
        if site is not None:
            query = query.where(Device.site == site)
        if room is not None:
            query = query.where(Device.room == room)
        if online is not None:
            query = query.where(Device.online.is_(online))
        with self.session() as s:
            return [device_dict(d) for d in s.scalars(query)]

    def device(self, device_id: str) -> dict[str, Any] | None:
        """One device, or None."""
        with self.session() as s:
            found = s.get(Device, device_id)
            return device_dict(found) if found else None

    def observations(
        self, device_id: str, since: datetime | None, after_seq: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """A device's observations in seq order, and the seq to continue after (or None)."""
        o = ObservationRow
        query = select(o.seq, o.stored_at, o.payload).where(o.device_id == device_id)
        if since is not None:
            query = query.where(o.captured_at >= since)
        if after_seq is not None:
            query = query.where(o.seq > after_seq)
        query = query.order_by(o.seq).limit(limit + 1)
        with self.session() as s:
            rows = s.execute(query).all()
        page = rows[:limit]
        items = [{**payload, "stored_at": _iso(stored)} for _, stored, payload in page]
        next_after = page[-1][0] if len(rows) > limit else None
        return items, next_after

    def alerts(
        self,
        device_id: str | None,
        site: str | None,
        room: str | None,
        state: AlertState | None,
        since: datetime | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Alerts, newest first; state "open" means raised and not cleared since."""
        a = AlertRow
        query = select(a, Device.site, Device.room).join(Device, Device.id == a.device_id)
        if device_id is not None:
            query = query.where(a.device_id == device_id)
        if site is not None:
            query = query.where(Device.site == site)
        if room is not None:
            query = query.where(Device.room == room)
        if since is not None:
            query = query.where(a.at >= since)
        if state in ("raised", "open"):
            query = query.where(a.state == "raised")
        elif state == "cleared":
            query = query.where(a.state == "cleared")
        if state == "open":
            query = query.where(~_cleared(a))
        query = query.order_by(a.at.desc(), a.id.desc()).limit(limit)
        with self.session() as s:
            return [alert_dict(row, site_, room_) for row, site_, room_ in s.execute(query).all()]

    def fleet_summary(self) -> list[dict[str, Any]]:
        """Per site and room: devices, online/offline, latest health labels, open alerts."""
        a = AlertRow
        joined, c = _with_latest(self.dialect, outer=True)
        latest = select(
            Device.site, Device.room, Device.online, c.health_label, c.captured_at
        ).select_from(joined)
        open_alerts = (
            select(Device.site, Device.room, func.count())
            .select_from(a)
            .join(Device, Device.id == a.device_id)
            .where(a.state == "raised", ~_cleared(a))
            .group_by(Device.site, Device.room)
        )
        rooms: dict[tuple[str, str], dict[str, Any]] = {}
        with self.session() as s:
            for site, room, online, label, captured in s.execute(latest).all():
                entry = rooms.setdefault((site, room), _empty_room(site, room))
                entry["devices"] += 1
                key = "online" if online else "offline" if online is False else "unknown"
                entry[key] += 1
                if label is not None:
                    entry["health"][label] = entry["health"].get(label, 0) + 1
                if captured is not None:
                    newest = entry["latest_capture_at"]
                    entry["latest_capture_at"] = max(captured, newest or captured)
            for site, room, count in s.execute(open_alerts).all():
                rooms.setdefault((site, room), _empty_room(site, room))["open_alerts"] = count
        for entry in rooms.values():
            entry["latest_capture_at"] = _iso(entry["latest_capture_at"])
        return [rooms[k] for k in sorted(rooms)]

    def latest(self, site: str | None = None, room: str | None = None) -> list[dict[str, Any]]:
        """Each device's newest observation (by seq), in brief; devices without one are left out."""
        joined, c = _with_latest(self.dialect, outer=False)
        query = (
            select(
                Device.id,
                Device.site,
                Device.room,
                c.seq,
                c.captured_at,
                c.cover_pct,
                c.health_label,
                c.health_confidence,
            )
            .select_from(joined)
            .order_by(Device.id)
        )
        if site is not None:
            query = query.where(Device.site == site)
        if room is not None:
            query = query.where(Device.room == room)
        with self.session() as s:
            return [
                {
                    "device_id": d,
                    "site": site_,
                    "room": room_,
                    "seq": seq,
                    "captured_at": _iso(captured),
                    "cover_pct": cover,
                    "health_label": label,
                    "health_confidence": confidence,
                }
                for d, site_, room_, seq, captured, cover, label, confidence in s.execute(query)
            ]

    def room_observations(
        self, site: str, room: str, since: datetime, until: datetime, limit: int
    ) -> list[dict[str, Any]]:
        """One room's observations captured in [since, until), in brief, oldest first."""
        o = ObservationRow
        query = (
            select(o.device_id, o.seq, o.captured_at, o.cover_pct, o.health_label)
            .where(o.site == site, o.room == room, o.captured_at >= since, o.captured_at < until)
            .order_by(o.captured_at, o.device_id)
            .limit(limit)
        )
        with self.session() as s:
            return [
                {
                    "device_id": d,
                    "seq": seq,
                    "captured_at": _iso(captured),
                    "cover_pct": cover,
                    "health_label": label,
                }
                for d, seq, captured, cover, label in s.execute(query)
            ]


def _with_latest(dialect: str, outer: bool) -> tuple[Any, Any]:
    """Devices joined to each device's last observation through its key, and the columns of
    that observation.

    The key's captured_at names the one weekly partition to read; joining on (device_id,
    seq) alone would probe every week. On PostgreSQL the row is fetched in a LATERAL
    subquery with the key's captured_at as a parameter: one key probe and one probe of
    one partition per device, at any table size (a plain join lets the planner hash
    whole tables instead).
    """
    o, k = ObservationRow, ObservationKey
    if dialect == "postgresql":
        captured = (
            select(k.captured_at)
            .where(k.device_id == Device.id, k.seq == Device.last_seq)
            .correlate(Device)
            .scalar_subquery()
        )
        row = (
            select(o.seq, o.captured_at, o.cover_pct, o.health_label, o.health_confidence)
            .where(o.device_id == Device.id, o.seq == Device.last_seq, o.captured_at == captured)
            .correlate(Device)
            .limit(1)
            .lateral("latest")
        )
        devices = Device.__table__
        joined = devices.outerjoin(row, true()) if outer else devices.join(row, true())
        return joined, row.c
    keyed = k.__table__.join(
        o, and_(o.device_id == k.device_id, o.seq == k.seq, o.captured_at == k.captured_at)
    )
    on_key = and_(k.device_id == Device.id, k.seq == Device.last_seq)
    devices = Device.__table__
    joined = devices.outerjoin(keyed, on_key) if outer else devices.join(keyed, on_key)
    return joined, o.__table__.c


def _cleared(a: type[AlertRow]) -> Any:
    later = aliased(AlertRow)
    return exists().where(
        later.device_id == a.device_id, later.alert_id == a.alert_id, later.state == "cleared"
    )


def _empty_room(site: str, room: str) -> dict[str, Any]:
    return {
        "site": site,
        "room": room,
        "devices": 0,
        "online": 0,
        "offline": 0,
        "unknown": 0,
        "health": {},
        "open_alerts": 0,
        "latest_capture_at": None,
    }


def device_dict(d: Device) -> dict[str, Any]:
    """A device as the API shows it."""
    return {
        "id": d.id,
        "site": d.site,
        "room": d.room,
        "online": d.online,
        "first_seen": _iso(d.first_seen),
        "last_seen": _iso(d.last_seen),
        "status_at": _iso(d.status_at),
        "firmware": d.firmware,
        "model_version": d.model_version,
        "model_backend": d.model_backend,
        "last_seq": d.last_seq,
        "last_stats": d.last_stats,
    }


def alert_dict(a: AlertRow, site: str, room: str) -> dict[str, Any]:
    """An alert as the API shows it."""
    return {
        "device_id": a.device_id,
        "site": site,
        "room": room,
        "alert_id": a.alert_id,
        "kind": a.kind,
        "state": a.state,
        "at": _iso(a.at),
        "seq": a.seq,
        "label": a.label,
        "message": a.message,
        "value": a.value,
        "baseline": a.baseline,
    }
