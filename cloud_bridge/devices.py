"""How messages keep the devices table current: presence, place, firmware and model.

Rows are touched in device-id order, so two bridges writing at once cannot deadlock on
them, and every update is written so that the order in which two bridges commit does
not change the result.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, and_, bindparam, case, false, or_, update
from sqlalchemy.orm import Session

from cloud_bridge.database import upsert
from cloud_bridge.decode import Accepted
from cloud_bridge.tables import Device
from edge.protocol import Observation, Stats, Status


def update_devices(
    session: Session, dialect: str, messages: list[tuple[Accepted, datetime]]
) -> Counter[str]:
    """Apply a batch's messages to the devices table; returns status/stats updates applied."""
    applied: Counter[str] = Counter()
    by_device: dict[str, list[tuple[Accepted, datetime]]] = defaultdict(list)
    for accepted, received_at in messages:
        by_device[accepted.device_id].append((accepted, received_at))
    if not by_device:
        return applied
    seen = [_seen_row(device_id, by_device[device_id]) for device_id in sorted(by_device)]
    session.execute(_seen_statement(dialect), seen)
    for device_id in sorted(by_device):
        for accepted, received_at in by_device[device_id]:
            message = accepted.message
            if isinstance(message, Status):
                session.execute(_status_statement(dialect, message, received_at))
                applied["status"] += 1
            elif isinstance(message, Stats):
                session.execute(_stats_statement(dialect, message, received_at, accepted.document))
                applied["stats"] += 1
    alive = []
    for device_id in sorted(by_device):
        times = [t for a, t in by_device[device_id] if not isinstance(a.message, Status)]
        if times:
            alive.append({"device_id": device_id, "alive_at": max(times)})
    if alive:  # one executemany (one round trip), rows in device-id order as above
        session.execute(_ALIVE, alive)
    return applied


_DEVICES = cast(Table, Device.__table__)
# A device that sent anything after its "offline" status is online: presence follows its
# latest message (a Will can be older than the messages of a device that stayed up).
_ALIVE = (
    update(_DEVICES)
    .where(
        _DEVICES.c.id == bindparam("device_id"),
        _DEVICES.c.online.is_(False),
        or_(_DEVICES.c.status_at.is_(None), _DEVICES.c.status_at < bindparam("alive_at")),
    )
    .values(online=True)
)


def _seen_row(device_id: str, messages: list[tuple[Accepted, datetime]]) -> dict[str, Any]:
    """First/last seen of a device in this batch, and where its newest observation says it is."""
    times = [received_at for _, received_at in messages]
    newest: Observation | None = None
    for accepted, _ in messages:
        msg = accepted.message
        if isinstance(msg, Observation) and (newest is None or msg.seq > newest.seq):
            newest = msg
    return {
        "id": device_id,
        "site": newest.site if newest else "default",
        "room": newest.room if newest else "default",
        "first_seen": min(times),
        "last_seen": max(times),
        "last_seq": newest.seq if newest else None,
        "model_version": newest.model.version if newest else None,
        "model_backend": newest.model.backend if newest else None,
    }


def _seen_statement(dialect: str) -> Any:
    """Create the device, or move last_seen on; place and model follow the newest seq only."""
    ins = upsert(dialect, Device)
    new = ins.excluded
    newer = or_(Device.last_seq.is_(None), new.last_seq >= Device.last_seq)
    has_obs = new.last_seq.is_not(None)
    from_newest = and_(has_obs, newer)
    return ins.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "last_seen": case(
                (Device.last_seen < new.last_seen, new.last_seen), else_=Device.last_seen
            ),
            "site": case((from_newest, new.site), else_=Device.site),
            "room": case((from_newest, new.room), else_=Device.room),
            "last_seq": case((from_newest, new.last_seq), else_=Device.last_seq),
            "model_version": _if_set(from_newest, new.model_version, Device.model_version),
            "model_backend": _if_set(from_newest, new.model_backend, Device.model_backend),
        },
    )


def _status_statement(dialect: str, status: Status, received_at: datetime) -> Any:
    ins = upsert(dialect, Device).values(
        id=status.device_id,
        site="default",
        room="default",
        first_seen=received_at,
        last_seen=received_at,
        online=status.state == "online",
        status_at=received_at,
        session_started_at=status.started_at,
        firmware=status.firmware,
        model_version=status.model_version,
        model_backend=status.model_backend,
        ip=status.ip,
    )
    new = ins.excluded
    # A status belongs to the device session that started at `started_at`: the newest
    # session wins; within one session the later one wins (a device that stayed up
    # reconnects after a broker restart and says "online" again after its Will), and
    # at the same instant "offline" wins, whatever order two bridges commit them in.
    applies = or_(
        new.session_started_at.is_(None),
        Device.session_started_at.is_(None),
        new.session_started_at > Device.session_started_at,
        and_(
            new.session_started_at == Device.session_started_at,
            or_(
                Device.status_at.is_(None),
                new.status_at > Device.status_at,
                and_(
                    new.status_at == Device.status_at,
                    or_(new.online == false(), Device.online.is_not(False)),
                ),
            ),
        ),
    )
    column = Device.__table__.c
    set_: dict[str, Any] = {
        f: case((applies, new[f]), else_=column[f])
        for f in ("online", "status_at", "session_started_at", "firmware", "ip")
    }
    for f in ("model_version", "model_backend"):
        set_[f] = _if_set(applies, new[f], column[f])
    return ins.on_conflict_do_update(index_elements=["id"], set_=set_)


def _stats_statement(
    dialect: str, stats: Stats, received_at: datetime, document: dict[str, Any]
) -> Any:
    ins = upsert(dialect, Device).values(
        id=stats.device_id,
        site="default",
        room="default",
        first_seen=received_at,
        last_seen=received_at,
        last_stats=document,
        last_stats_at=stats.at,
    )
    new = ins.excluded
    newer = or_(Device.last_stats_at.is_(None), new.last_stats_at > Device.last_stats_at)
    return ins.on_conflict_do_update(
        index_elements=["id"],
        set_={
            "last_stats": case((newer, new.last_stats), else_=Device.last_stats),
            "last_stats_at": case((newer, new.last_stats_at), else_=Device.last_stats_at),
        },
    )


def _if_set(condition: ColumnElement[bool], new: Any, old: Any) -> Any:
    return case((and_(condition, new.is_not(None)), new), else_=old)
