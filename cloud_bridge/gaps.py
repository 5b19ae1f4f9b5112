"""Finding holes in each device's seq and asking the device to resend them.

A broker drops QoS 1 messages without telling anyone when a client's queue overflows,
so "the broker acknowledged it" does not yet mean "the bridge stored it". Every device
numbers its observations 1, 2, 3, ... and keeps them, so a missing number is visible
and recoverable.

A hole is a run of missing seqs below a seq the database already holds, where that
later row has been stored for at least `grace_s` (out-of-order delivery, redelivery
and a second bridge usually close a gap within seconds). Holes whose later row is
older than `give_up_after_s` are no longer asked for. Seqs above the newest stored one
cannot be seen as missing until a later one arrives, and seqs below the first one the
bridge ever stored for a device are not asked for.

A device is asked at most once per `resend_interval_s`, whichever bridge asks: the
claim is a row in `resend_claims`, taken with one atomic upsert. Devices whose last
status was "offline" and that have sent nothing since are not asked until they are
back. Each scan takes at most MAX_COMMANDS_PER_DEVICE holes per device, lowest first,
and visits devices round robin, so no device's backlog delays another's.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, and_, case, func, or_, select
from sqlalchemy.orm import Session, aliased

from cloud_bridge.config import GapsConfig
from cloud_bridge.database import is_transient, upsert
from cloud_bridge.metrics import BridgeMetrics
from cloud_bridge.tables import Device, ObservationRow, ResendClaim
from edge.protocol import MAX_RESEND, ResendCommand, command_topic

log = logging.getLogger("cloud_bridge.gaps")
MAX_COMMANDS_PER_DEVICE = 20
MAX_HOLES_PER_SCAN = 5000


@dataclass(frozen=True, slots=True)
class Hole:
    """Seqs `from_seq`..`to_seq` of one device are missing."""

    device_id: str
    from_seq: int
    to_seq: int

    @property
    def size(self) -> int:
        """How many observations are missing."""
        return self.to_seq - self.from_seq + 1


class TokenBucket:
    """At most `per_minute` events per minute, in bursts up to that size."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.tokens = self.capacity
        self.clock = clock
        self.updated = clock()

    def available(self) -> bool:
        """True if a token is there to take."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        return self.tokens >= 1

    def take(self) -> bool:
        """Use one token if there is one."""
        if self.available():
            self.tokens -= 1
            return True
        return False


def find_holes(
    session: Session,
    now: datetime,
    grace_s: float,
    give_up_after_s: float,
    per_device: int = MAX_COMMANDS_PER_DEVICE,
    after: str | None = None,
) -> list[Hole]:
    """Holes whose later seq was stored between `give_up_after_s` and `grace_s` ago.

    At most `per_device` (the lowest) per device; devices in id order, wrapping around
    after `after` (round robin across scans).
    """
    since = now - timedelta(seconds=give_up_after_s)
    cutoff = now - timedelta(seconds=grace_s)
    o = ObservationRow
    lowest = (
        select(o.device_id, func.min(o.seq).label("low"))
        .where(o.stored_at >= since)
        .group_by(o.device_id)
        .subquery("lowest")
    )
    ordered = (
        select(
            o.device_id,
            o.seq,
            o.stored_at,
            func.lag(o.seq).over(partition_by=o.device_id, order_by=o.seq).label("prev_seq"),
        )
        .join(lowest, and_(o.device_id == lowest.c.device_id, o.seq >= lowest.c.low))
        .subquery("ordered")
    )
    earlier = aliased(ObservationRow)
    before_first = (
        select(func.max(earlier.seq))
        .where(earlier.device_id == ordered.c.device_id, earlier.seq < ordered.c.seq)
        .scalar_subquery()
    )
    prev = func.coalesce(ordered.c.prev_seq, before_first)
    holes = (
        select(
            ordered.c.device_id,
            prev.label("prev"),
            ordered.c.seq,
            func.row_number()
            .over(partition_by=ordered.c.device_id, order_by=ordered.c.seq)
            .label("nth"),
        )
        .where(
            ordered.c.stored_at <= cutoff,
            ordered.c.stored_at >= since,
            ordered.c.seq > prev + 1,
        )
        .subquery("holes")
    )
    # Each device's lowest holes only, and devices in turn starting after `after`, so a
    # device with thousands of holes can neither crowd out nor starve the others.
    later = case((holes.c.device_id > after, 0), else_=1) if after is not None else None
    query = (
        select(holes.c.device_id, holes.c.prev, holes.c.seq)
        .where(holes.c.nth <= per_device)
        .order_by(*([later] if later is not None else []), holes.c.device_id, holes.c.seq)
        .limit(MAX_HOLES_PER_SCAN)
    )
    return [Hole(d, p + 1, s - 1) for d, p, s in session.execute(query).all()]


class GapFiller:
    """Scans for holes and sends `resend` commands, within the per-device and global limits."""

    def __init__(
        self,
        engine: Engine,
        config: GapsConfig,
        publish: Callable[[str, bytes], None],
        metrics: BridgeMetrics,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.engine = engine
        self.config = config
        self.publish = publish
        self.metrics = metrics
        self.now = now
        self.bucket = TokenBucket(config.max_requests_per_minute)
        self._after: str | None = None  # the round robin's position: last device asked

    def run(self, stop: threading.Event) -> None:
        """Scan every `scan_interval_s` until `stop`; a failed scan is retried next time."""
        while not stop.wait(self.config.scan_interval_s):
            try:
                self.scan_once()
            except Exception as exc:
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "seq hole scan failed", extra={"error": str(exc)[:300]})

    def scan_once(self) -> int:
        """One scan: find holes, claim devices, send commands; returns commands sent."""
        now = self.now()
        with Session(self.engine) as session:
            holes = find_holes(
                session, now, self.config.grace_s, self.config.give_up_after_s, after=self._after
            )
        self.metrics.holes.set(len(holes))
        self.metrics.missing.set(sum(h.size for h in holes))
        by_device: dict[str, list[Hole]] = defaultdict(list)
        for hole in holes:
            by_device[hole.device_id].append(hole)
        if not by_device:
            return 0
        offline = self._offline(list(by_device))
        sent = 0
        for device_id, device_holes in by_device.items():
            if device_id in offline:
                continue
            if not self.bucket.available():
                self.metrics.resend_throttled.inc()
                break
            wanted = device_holes[:MAX_COMMANDS_PER_DEVICE]
            self._after = device_id
            if not self._claim(device_id, wanted[0], now):
                continue
            for hole in wanted:
                if not self.bucket.take():
                    self.metrics.resend_throttled.inc()
                    break
                self._ask(hole)
                sent += 1
        return sent

    def _offline(self, device_ids: list[str]) -> set[str]:
        """Devices whose last word was "offline": nothing received since that status."""
        with Session(self.engine) as session:
            silent = or_(Device.status_at.is_(None), Device.last_seen <= Device.status_at)
            rows = session.execute(
                select(Device.id).where(Device.id.in_(device_ids), Device.online.is_(False), silent)
            )
            return {r for (r,) in rows}

    def _claim(self, device_id: str, hole: Hole, now: datetime) -> bool:
        """Take this device's resend slot for this interval; False if another bridge has it."""
        dialect = self.engine.dialect.name
        stale = now - timedelta(seconds=self.config.resend_interval_s)
        ins = upsert(dialect, ResendClaim).values(
            device_id=device_id,
            requested_at=now,
            from_seq=hole.from_seq,
            to_seq=hole.to_seq,
            requests=1,
        )
        stmt = ins.on_conflict_do_update(
            index_elements=["device_id"],
            set_={
                "requested_at": ins.excluded.requested_at,
                "from_seq": ins.excluded.from_seq,
                "to_seq": ins.excluded.to_seq,
                "requests": ResendClaim.requests + 1,
            },
            where=ResendClaim.requested_at <= stale,
        ).returning(ResendClaim.device_id)
        with Session(self.engine) as session, session.begin():
            return session.execute(stmt).first() is not None

    def _ask(self, hole: Hole) -> None:
        to_seq = min(hole.to_seq, hole.from_seq + MAX_RESEND - 1)
        command = ResendCommand(
            request_id=f"bridge-{uuid.uuid4().hex[:16]}", from_seq=hole.from_seq, to_seq=to_seq
        )
        self.publish(command_topic(hole.device_id, "resend"), command.model_dump_json().encode())
        self.metrics.resend_requests.inc()
        log.info(
            "asked device to resend",
            extra={"device_id": hole.device_id, "from_seq": hole.from_seq, "to_seq": to_seq},
        )
