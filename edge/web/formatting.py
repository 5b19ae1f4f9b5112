"""Numbers and times as a grower reads them: '12 min ago', '3.4 GB', '41.2 %'."""

from __future__ import annotations

from datetime import datetime, timezone


def ago(when: datetime | None, now: datetime) -> str:
    """How long before `now` `when` was, coarsely."""
    if when is None:
        return "never"
    if when.tzinfo is None:  # SQLite hands back naive UTC
        when = when.replace(tzinfo=timezone.utc)
    seconds = (now - when).total_seconds()
    if seconds < -60:
        return "in the future (clock off?)"
    if seconds < 60:
        return "just now"
    return duration(seconds) + " ago"


def duration(seconds: float) -> str:
    """A span as its two largest units: '3 d 4 h', '12 min'."""
    s = int(max(0, seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes = s // 60
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else f"{s} s"


def size(n: float | None) -> str:
    """A byte count in binary units."""
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def pct(value: float | None, digits: int = 1) -> str:
    """A percentage, or a dash when unknown."""
    return "–" if value is None else f"{value:.{digits}f} %"


def label(name: str | None) -> str:
    """A model label in words: 'powdery_mildew' -> 'Powdery mildew'."""
    if not name:
        return "–"
    return name.replace("_", " ").capitalize()
