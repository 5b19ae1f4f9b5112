"""Time-lapse video of the stored photos: lights-on frames only, a date stamp on each.

Streamed: rows are read from the database in small batches and photos are decoded
one at a time, so memory stays flat however long the grow. The video is written to
a temporary name and renamed when complete, so a half-written file is never served.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from edge.errors import CultivaiError, ImageDecodeError
from edge.store import Store
from edge.tables import ObservationRow
from edge.vision.decode import fit_within, header_size, is_jpeg, reduction_for

log = logging.getLogger(__name__)
Per = Literal["capture", "day"]
# Codecs tried per container, best first. H.264 needs an OpenCV or FFmpeg built with
# an encoder for it; MPEG-4 Part 2 (mp4v) ships with every OpenCV build.
CODECS: dict[str, tuple[str, ...]] = {".mp4": ("avc1", "mp4v"), ".webm": ("VP80",)}
MAX_PHOTO_BYTES = 64 * 2**20
ROW_BATCH = 256
_REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


class TimelapseError(CultivaiError, ValueError):
    """A time-lapse could not be made: empty range, no usable frame, no codec."""


@dataclass(slots=True)
class TimelapseResult:
    """What went into the video and what was left out, by reason."""

    path: Path
    codec: str = ""
    width: int = 0
    height: int = 0
    frames: int = 0
    skipped_dark: int = 0
    skipped_unusable: int = 0
    skipped_corrupt: int = 0
    skipped_missing: int = 0
    first: datetime | None = None
    last: datetime | None = None
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the CLI and the log."""
        return (
            f"{self.path}: {self.frames} frames, {self.width}x{self.height} {self.codec}; "
            f"skipped {self.skipped_dark} dark, {self.skipped_unusable} badly exposed, "
            f"{self.skipped_corrupt} corrupt, {self.skipped_missing} missing"
        )


@dataclass(frozen=True, slots=True)
class _Candidate:
    seq: int
    captured_at: datetime
    image_path: str
    verdict: str | None
    mean_luma: float | None


def day_range(first: str, last: str, tz: tzinfo) -> tuple[datetime, datetime]:
    """[start of `first`, end of `last`] in zone `tz`, from two YYYY-MM-DD dates."""
    days = []
    for name, text in (("--from", first), ("--to", last)):
        try:
            days.append(date.fromisoformat(text.strip()))
        except ValueError:
            raise TimelapseError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None
    start = datetime.combine(days[0], time(0), tzinfo=tz)
    end = datetime.combine(days[1] + timedelta(days=1), time(0), tzinfo=tz)
    if end <= start:
        raise TimelapseError(f"--to {last} is before --from {first}")
    return start, end - timedelta(microseconds=1)


def make_timelapse(
    store: Store,
    start: datetime,
    end: datetime,
    out: Path,
    *,
    per: Per = "capture",
    fps: float = 24.0,
    max_side: int = 1280,
    dark_luma: float = 20.0,
    tz: tzinfo | None = None,
) -> TimelapseResult:
    """Encode the kept photos captured in [start, end] into `out` (.mp4 or .webm).

    Frames whose stored exposure was not "ok", or whose measured brightness is below
    `dark_luma` (lights off), are skipped; corrupt or missing photo files are skipped
    and counted. `per="day"` keeps the first usable frame of each calendar day in
    `tz` (the date stamp uses the same zone). Raises TimelapseError naming the
    problem when nothing usable is in the range.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise TimelapseError("start and end need a time zone")
    if end < start:
        raise TimelapseError(f"end {end.isoformat()} is before start {start.isoformat()}")
    if per not in ("capture", "day"):
        raise TimelapseError(f"per must be 'capture' or 'day', not {per!r}")
    if not 0 < fps <= 120:
        raise TimelapseError(f"fps must be between 0 and 120, not {fps}")
    if max_side < 16:
        raise TimelapseError(f"max_side must be at least 16 pixels, not {max_side}")
    suffix = out.suffix.lower()
    if suffix not in CODECS:
        raise TimelapseError(f"output {out.name!r} must end in .mp4 or .webm")
    if not out.parent.is_dir():
        raise TimelapseError(f"folder {out.parent} does not exist")
    result = TimelapseResult(path=out)
    tmp = out.with_name(f".tmp-{out.stem}{suffix}")
    writer: _Writer | None = None
    seen = 0
    day_done: date | None = None
    try:
        for cand in _candidates(store, start, end):
            seen += 1
            local_day = cand.captured_at.astimezone(tz).date()
            if per == "day" and local_day == day_done:
                continue
            frame = _usable_frame(store, cand, result, max_side, dark_luma)
            if frame is None:
                continue
            if writer is None:
                writer = _Writer.open(tmp, suffix, fps, frame.shape[1], frame.shape[0])
                result.codec, result.width, result.height = writer.codec, writer.w, writer.h
            writer.write(frame, cand.captured_at.astimezone(tz))
            result.frames += 1
            result.first = result.first or cand.captured_at
            result.last = cand.captured_at
            day_done = local_day
    except BaseException:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
        raise
    span = f"between {start.isoformat()} and {end.isoformat()}"
    if writer is None:
        tmp.unlink(missing_ok=True)
        if seen == 0:
            raise TimelapseError(f"no photos are stored {span}")
        raise TimelapseError(
            f"no usable frame among {seen} photos {span}: {result.skipped_dark} dark, "
            f"{result.skipped_unusable} badly exposed, {result.skipped_corrupt} corrupt, "
            f"{result.skipped_missing} missing"
        )
    writer.release()
    try:
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise TimelapseError(f"could not save {out}: {exc.strerror or exc}") from exc
    log.info("time-lapse written", extra={"summary": result.summary()})
    return result


def _candidates(store: Store, start: datetime, end: datetime) -> Iterator[_Candidate]:
    """Kept photos in the range, oldest first, read in small batches (never all at once)."""
    payload = ObservationRow.payload
    q = (
        select(
            ObservationRow.seq,
            ObservationRow.captured_at,
            ObservationRow.image_path,
            func.json_extract(payload, "$.exposure.verdict"),
            func.json_extract(payload, "$.exposure.mean_luma"),
        )
        .where(ObservationRow.image_path.is_not(None))
        # SQLite keeps the UTC wall time without its offset: compare in UTC.
        .where(ObservationRow.captured_at.between(_utc(start), _utc(end)))
        .order_by(ObservationRow.captured_at, ObservationRow.seq)
    )
    last: tuple[datetime, int] | None = None
    while True:
        page = q if last is None else q.where(_after(*last))
        with Session(store.engine) as s:
            rows = s.execute(page.limit(ROW_BATCH)).all()
        for seq, at, path, verdict, luma in rows:
            at = at.replace(tzinfo=timezone.utc) if at.tzinfo is None else at
            yield _Candidate(int(seq), at, str(path), verdict, _float(luma))
        if len(rows) < ROW_BATCH:
            return
        last = (rows[-1][1], int(rows[-1][0]))


def _utc(at: datetime) -> datetime:
    return at.astimezone(timezone.utc).replace(tzinfo=None)


def _after(at: datetime, seq: int) -> ColumnElement[bool]:
    """Keyset condition: rows strictly after (captured_at, seq)."""
    return (ObservationRow.captured_at > at) | (
        (ObservationRow.captured_at == at) & (ObservationRow.seq > seq)
    )


def _float(value: object) -> float | None:
    try:
        return float(value) if value is not None else None  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _usable_frame(
    store: Store, cand: _Candidate, result: TimelapseResult, max_side: int, dark_luma: float
) -> np.ndarray | None:
    """The photo as BGR at video size, or None (and the reason counted) when skipped."""
    if cand.mean_luma is not None and cand.mean_luma < dark_luma:
        result.skipped_dark += 1
        return None
    if cand.verdict is not None and cand.verdict != "ok":
        result.skipped_unusable += 1
        return None
    path = store.root / cand.image_path
    try:
        if path.stat().st_size > MAX_PHOTO_BYTES:
            raise ImageDecodeError(f"photo is larger than {MAX_PHOTO_BYTES // 2**20} MB")
        bgr = _decode_bgr(path.read_bytes(), max_side)
    except FileNotFoundError:
        result.skipped_missing += 1
        return None
    except (OSError, ImageDecodeError) as exc:
        result.skipped_corrupt += 1
        result.problems.append(f"seq {cand.seq}: {exc}")
        log.warning("photo skipped in time-lapse", extra={"seq": cand.seq, "error": str(exc)})
        return None
    # The stored verdict is the first test; the frame itself is measured too, for
    # rows written without one and photos that differ from what was analysed.
    # Green, sampled on a coarse grid: close to luma on a canopy, and cheap.
    if float(bgr[::8, ::8, 1].mean()) < dark_luma:
        result.skipped_dark += 1
        return None
    return bgr


def _decode_bgr(data: bytes, max_side: int) -> np.ndarray:
    """Decode to BGR (what VideoWriter takes) with the same size checks as the analysis."""
    full = header_size(data)  # refuses absurd sizes before anything is allocated
    flags = cv2.IMREAD_COLOR
    if is_jpeg(data):
        # libjpeg pads a truncated file with grey; a grey frame would flash in the video.
        if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
            raise ImageDecodeError("JPEG is truncated (no end-of-image marker)")
        flags = _REDUCED.get(reduction_for(full, max_side), cv2.IMREAD_COLOR)
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:
        raise ImageDecodeError(f"photo could not be decoded: {str(exc).strip()[-200:]}") from None
    if bgr is None or bgr.size == 0:
        raise ImageDecodeError("photo data is corrupt and could not be decoded")
    return fit_within(bgr, max_side)


class _Writer:
    """A cv2.VideoWriter at a fixed even size that stamps each frame with its date."""

    def __init__(self, vw: cv2.VideoWriter, codec: str, w: int, h: int) -> None:
        self.vw, self.codec, self.w, self.h = vw, codec, w, h
        self.scale = max(0.4, h / 720)

    @classmethod
    def open(cls, path: Path, suffix: str, fps: float, width: int, height: int) -> _Writer:
        # Most codecs need even sizes (4:2:0 chroma); drop one pixel column/row if odd.
        w, h = width - width % 2, height - height % 2
        for codec in CODECS[suffix]:
            vw = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps, (w, h))
            if vw.isOpened():
                return cls(vw, codec, w, h)
            vw.release()
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        tried = ", ".join(CODECS[suffix])
        other = ".webm" if suffix == ".mp4" else ".mp4"
        raise TimelapseError(
            f"this OpenCV build cannot write {suffix} video (tried {tried}); try {other}"
        )

    def write(self, frame: np.ndarray, at: datetime) -> None:
        if frame.shape[1] != self.w or frame.shape[0] != self.h:
            frame = _fit(frame, self.w, self.h)
        else:
            frame = np.ascontiguousarray(frame)
        self._stamp(frame, at.strftime("%Y-%m-%d %H:%M"))
        try:
            self.vw.write(frame)
        except cv2.error as exc:
            raise TimelapseError(f"video encoder failed: {str(exc).strip()[-200:]}") from None

    def _stamp(self, frame: np.ndarray, text: str) -> None:
        org = (int(12 * self.scale), self.h - int(14 * self.scale))
        font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(2 * self.scale))
        # A dark outline under white text stays readable on leaves and on substrate.
        cv2.putText(frame, text, org, font, self.scale, (0, 0, 0), thick + 3, cv2.LINE_AA)
        cv2.putText(frame, text, org, font, self.scale, (255, 255, 255), thick, cv2.LINE_AA)

    def release(self) -> None:
        self.vw.release()


def _fit(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    """Letterbox a frame of another size (a camera change mid-grow) into w x h."""
    fh, fw = frame.shape[:2]
    scale = min(w / fw, h / fh)
    nw, nh = max(1, int(fw * scale)), max(1, int(fh * scale))
    canvas = np.zeros((h, w, 3), np.uint8)
    x, y = (w - nw) // 2, (h - nh) // 2
    canvas[y : y + nh, x : x + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_AREA)
    return canvas
