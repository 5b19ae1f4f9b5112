"""Read-only queries the page needs beyond the Store's own: ranges, days, chart series.

SQLite keeps `captured_at` as naive UTC text, so bounds are bound as UTC and results
are read back as UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo

from sqlalchemy import Integer, case, cast, func, select
from sqlalchemy.orm import Session

from edge.protocol import Observation
from edge.store import Store
from edge.tables import ObservationRow, OutboxRow

SEQ_MAX = 2**63 - 1  # SQLite's INTEGER: no larger seq exists, and SQLite cannot bind one


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest observation and which of its image files are kept."""

    observation: Observation
    has_photo: bool
    has_overlay: bool


@dataclass(frozen=True, slots=True)
class Counts:
    """What the store holds, for the status page."""

    observations: int
    photos: int
    photo_bytes: int
    outbox_depth: int


@dataclass(frozen=True, slots=True)
class PhotoRef:
    """A stored photo and the measurements shown beside it."""

    seq: int
    captured_at: datetime
    cover_pct: float
    health_label: str | None


@dataclass(frozen=True, slots=True)
class PhotoDay:
    """One local day with photos: how many, and the seq of the day's last one."""

    day: date
    photos: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """Averages over one time bucket of observations."""

    at: datetime
    count: int
    cover_pct: float
    yellow_pct: float | None  # None: no capture in the bucket had colour measured
    brown_pct: float | None
    health_confidence: float | None
    healthy_share: float | None


def utc(value: datetime) -> datetime:
    """A stored (naive UTC) or aware datetime as aware UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _naive_utc(value: datetime) -> datetime:
    return utc(value).replace(tzinfo=None)


def latest(store: Store) -> Latest | None:
    """The newest observation, in one query with its file references."""
    q = (
        select(ObservationRow.payload, ObservationRow.image_path, ObservationRow.overlay_path)
        .order_by(ObservationRow.seq.desc())
        .limit(1)
    )
    with Session(store.engine) as s:
        row = s.execute(q).first()
    if row is None:
        return None
    obs = Observation.model_validate_json(row.payload)
    return Latest(obs, row.image_path is not None, row.overlay_path is not None)


def counts(store: Store, with_photos: bool = True) -> Counts:
    """What the store holds, one statement each so that indexes can serve them.

    The photo tally reads every row unless the store indexes kept photos, so the
    status page leaves it out (`with_photos=False`: photos and bytes are -1).
    """
    with Session(store.engine) as s:
        observations = s.execute(select(func.count()).select_from(ObservationRow)).scalar_one()
        photos, size = -1, -1
        if with_photos:
            photos, size = s.execute(
                select(func.count(), func.coalesce(func.sum(ObservationRow.image_bytes), 0)).where(
                    ObservationRow.image_path.is_not(None)
                )
            ).one()
        depth = s.execute(select(func.count()).select_from(OutboxRow)).scalar_one()
    return Counts(int(observations), int(photos), int(size), int(depth))


def last_seq(store: Store) -> int:
    """The newest seq (0 when empty); also a cheap check that the database answers."""
    with Session(store.engine) as s:
        return int(s.execute(select(func.coalesce(func.max(ObservationRow.seq), 0))).scalar_one())


def observations_page(
    store: Store, since: datetime | None, after_seq: int | None, limit: int
) -> list[Observation]:
    """Observations in seq order: after a time and/or seq, else the latest `limit`."""
    q = select(ObservationRow.payload)
    if since is not None:
        q = q.where(ObservationRow.captured_at >= _naive_utc(since))
    if after_seq is not None:
        q = q.where(ObservationRow.seq > after_seq)
    latest_only = since is None and after_seq is None
    q = q.order_by(ObservationRow.seq.desc() if latest_only else ObservationRow.seq).limit(limit)
    with Session(store.engine) as s:
        payloads = list(s.execute(q).scalars())
    if latest_only:
        payloads.reverse()
    return [Observation.model_validate_json(p) for p in payloads]


def first_captured_at(store: Store) -> datetime | None:
    """When the oldest stored observation was taken."""
    with Session(store.engine) as s:
        first = s.execute(select(func.min(ObservationRow.captured_at))).scalar_one_or_none()
    return utc(first) if first is not None else None


def series(store: Store, start: datetime, end: datetime, buckets: int) -> list[SeriesPoint]:
    """Chart data: observations in [start, end) averaged into at most `buckets` buckets."""
    t0 = int(utc(start).timestamp())
    span = max(1, int((utc(end) - utc(start)).total_seconds()))
    width = -(-span // max(1, buckets))  # ceiling: `buckets` buckets cover the span
    epoch = cast(func.strftime("%s", ObservationRow.captured_at), Integer)
    bucket = ((epoch - t0) // width).label("bucket")
    # A declined ("unknown") verdict is no evidence either way: left out of both lines.
    declined = ObservationRow.health_label == "unknown"
    healthy = case(
        (ObservationRow.health_label.is_(None), None),
        (declined, None),
        (ObservationRow.health_label == "healthy", 1.0),
        else_=0.0,
    )
    confidence = case((declined, None), else_=ObservationRow.health_confidence)
    q = (
        select(
            bucket,
            func.count(),
            func.avg(ObservationRow.cover_pct),
            func.avg(ObservationRow.yellow_pct),
            func.avg(ObservationRow.brown_pct),
            func.avg(confidence),
            func.avg(healthy),
        )
        .where(ObservationRow.captured_at >= _naive_utc(start))
        .where(ObservationRow.captured_at < _naive_utc(end))
        .group_by(bucket)
        .order_by(bucket)
    )
    with Session(store.engine) as s:
        rows = s.execute(q).all()
    return [
        SeriesPoint(
            at=datetime.fromtimestamp(t0 + int(b) * width + width // 2, timezone.utc),
            count=int(n),
            cover_pct=float(cover),
            yellow_pct=None if yellow is None else float(yellow),  # AVG skips nulls
            brown_pct=None if brown is None else float(brown),
            health_confidence=None if conf is None else float(conf),
            healthy_share=None if share is None else float(share),
        )
        for b, n, cover, yellow, brown, conf, share in rows
    ]


def _photo_refs(store: Store, start: datetime | None, end: datetime | None) -> list[PhotoRef]:
    q = select(
        ObservationRow.seq,
        ObservationRow.captured_at,
        ObservationRow.cover_pct,
        ObservationRow.health_label,
    ).where(ObservationRow.image_path.is_not(None))
    if start is not None:
        q = q.where(ObservationRow.captured_at >= _naive_utc(start))
    if end is not None:
        q = q.where(ObservationRow.captured_at < _naive_utc(end))
    with Session(store.engine) as s:
        rows = s.execute(q.order_by(ObservationRow.seq)).all()
    return [PhotoRef(r.seq, utc(r.captured_at), r.cover_pct, r.health_label) for r in rows]


def photo_days(store: Store, tz: tzinfo) -> list[PhotoDay]:
    """Local days that have photos, newest first."""
    days: dict[date, tuple[int, int]] = {}
    for ref in _photo_refs(store, None, None):
        day = ref.captured_at.astimezone(tz).date()
        count, _ = days.get(day, (0, 0))
        days[day] = (count + 1, ref.seq)
    return [PhotoDay(day, n, last) for day, (n, last) in sorted(days.items(), reverse=True)]


def day_bounds(day: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The UTC start and end of a local day (DST-aware)."""
    start = datetime.combine(day, time(0), tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tz)
    return utc(start), utc(end)


def photos_on(store: Store, day: date, tz: tzinfo) -> list[PhotoRef]:
    """The photos of one local day, oldest first."""
    return _photo_refs(store, *day_bounds(day, tz))


def timelapse_frames(store: Store, tz: tzinfo, per_day: bool, max_frames: int) -> list[PhotoRef]:
    """Photos for a time-lapse: the middle photo of each day, or all; evenly thinned."""
    refs = _photo_refs(store, None, None)
    if per_day:
        by_day: dict[date, list[PhotoRef]] = {}
        for ref in refs:
            by_day.setdefault(ref.captured_at.astimezone(tz).date(), []).append(ref)
        refs = [day_refs[len(day_refs) // 2] for _, day_refs in sorted(by_day.items())]
    if len(refs) > max_frames:
        step = len(refs) / max_frames
        refs = [refs[int(i * step)] for i in range(max_frames)]
    return refs


def photo_neighbours(store: Store, seq: int) -> tuple[int | None, int | None]:
    """Seqs of the previous and next kept photos around `seq`."""
    has_photo = ObservationRow.image_path.is_not(None)
    with Session(store.engine) as s:
        before = s.execute(
            select(func.max(ObservationRow.seq)).where(has_photo, ObservationRow.seq < seq)
        ).scalar_one_or_none()
        after = s.execute(
            select(func.min(ObservationRow.seq)).where(has_photo, ObservationRow.seq > seq)
        ).scalar_one_or_none()
    return before, after


@dataclass(frozen=True, slots=True)
class ClimatePoint:
    """Climate averages over one time bucket; None: nothing measured in it."""

    at: datetime
    air_temp_c: float | None
    leaf_temp_c: float | None
    air_vpd_kpa: float | None
    leaf_vpd_kpa: float | None


def climate_series(
    store: Store, start: datetime, end: datetime, buckets: int
) -> list[ClimatePoint]:
    """Climate chart data from the observations' climate blocks, like `series`."""
    t0 = int(utc(start).timestamp())
    span = max(1, int((utc(end) - utc(start)).total_seconds()))
    width = -(-span // max(1, buckets))
    epoch = cast(func.strftime("%s", ObservationRow.captured_at), Integer)
    bucket = ((epoch - t0) // width).label("bucket")
    fields = ("air_temp_c", "leaf_temp_c", "air_vpd_kpa", "leaf_vpd_kpa")
    averages = [
        func.avg(func.json_extract(ObservationRow.payload, f"$.climate.{f}")) for f in fields
    ]
    q = (
        select(bucket, *averages)
        .where(ObservationRow.captured_at >= _naive_utc(start))
        .where(ObservationRow.captured_at < _naive_utc(end))
        .group_by(bucket)
        .order_by(bucket)
    )
    with Session(store.engine) as s:
        rows = s.execute(q).all()
    return [
        ClimatePoint(
            datetime.fromtimestamp(t0 + int(b) * width + width // 2, timezone.utc),
            *(None if v is None else float(v) for v in values),
        )
        for b, *values in rows
    ]
