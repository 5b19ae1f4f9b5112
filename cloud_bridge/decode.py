"""Turn one MQTT message (topic + raw bytes) into a validated message or a reason to reject it.

This is the only place where untrusted bytes become data. It never raises: anything it
cannot accept comes back as `Rejected`, which the bridge stores as a dead letter. Beyond
the protocol's own validation it refuses what the database could not store faithfully
(NaN and infinite numbers, integers beyond 64 bits, NUL characters, unpaired
surrogates), so
a batch never fails on one bad message.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from edge.jsonbounds import MAX_DEPTH, JsonBoundsError
from edge.jsonbounds import loads as bounded_loads
from edge.protocol import TOPIC_ROOT, Alert, Message, Observation, Stats, Status, Thumbnail

Kind = Literal["observation", "alert", "status", "stats", "thumbnail"]
KINDS: tuple[Kind, ...] = ("observation", "alert", "status", "stats", "thumbnail")
DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
INT64_MAX = 2**63 - 1
JPEG_MAGIC = b"\xff\xd8\xff"
_MAX_ERROR_CHARS = 1000
_RISKY_NUMBER = re.compile(rb"[eE][+-]?\d{3}|\d{19}")


MODELS: dict[Kind, type[Message]] = {
    "observation": Observation,
    "alert": Alert,
    "status": Status,
    "stats": Stats,
    "thumbnail": Thumbnail,
}


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits a message must respect."""

    max_payload_bytes: int
    thumbnail_max_bytes: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid message: its kind, its device, the model, and the payload as parsed JSON."""

    kind: Kind
    device_id: str
    message: Message
    document: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message the bridge cannot accept: a short reason code and a readable error."""

    reason: Literal[
        "oversize", "topic", "json", "unsafe", "invalid", "device_mismatch", "conflict", "database"
    ]
    error: str


Decoded = Accepted | Rejected


def parse_topic(topic: str) -> tuple[str, Kind] | None:
    """(device_id, kind) of a device topic `cultivai/v1/<device_id>/<kind>`, or None."""
    prefix = TOPIC_ROOT + "/"
    if not topic.startswith(prefix):
        return None
    parts = topic[len(prefix) :].split("/")
    if len(parts) != 2 or not DEVICE_ID.fullmatch(parts[0]):
        return None
    for kind in KINDS:
        if parts[1] == kind:
            return parts[0], kind
    return None


def safe_text(text: str, limit: int = _MAX_ERROR_CHARS) -> str:
    """`text` made storable: no NUL, no unpaired surrogates, at most `limit` characters."""
    cleaned = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


class _UnsafeError(ValueError):
    """A JSON value the database could not store faithfully."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _UnsafeError(f"number {text[:40]} is out of range")
    return value


def _int64(text: str) -> int:
    value = int(text) if len(text) <= 20 else INT64_MAX + 1
    if not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise _UnsafeError(f"integer {text[:40]} does not fit in 64 bits")
    return value


def _no_constant(name: str) -> float:
    raise _UnsafeError(f"{name} is not a number")


def _bad_string(document: object) -> str | None:
    """Why a string in the parsed JSON could not be stored (NUL, lone surrogate), or None."""
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, str) and ("\x00" in node or not _is_utf8(node)):
            return "a string contains NUL or an unpaired surrogate"
    return None


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def describe_validation(exc: ValidationError, limit: int = 8) -> str:
    """The pydantic errors as `field: problem` pairs, without echoing the payload."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(payload)"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def decode(topic: str, payload: bytes, limits: Limits) -> Decoded:
    """Validate one message; never raises."""
    if len(payload) > limits.max_payload_bytes:
        return Rejected(
            "oversize", f"payload is {len(payload)} bytes; the limit is {limits.max_payload_bytes}"
        )
    parsed = parse_topic(topic)
    if parsed is None:
        return Rejected("topic", f"not a device topic: {safe_text(topic, 200)}")
    device_id, kind = parsed
    try:
        # Nesting is bounded before parsing: deep payloads cost a scan, not a recursion.
        # Only a number with a 3-digit exponent can overflow a float, and only one with 19
        # digits can leave 64 bits: payloads without either parse with the C number
        # parsers, the rest with the checking hooks (a long digit string merely costs the
        # slow path).
        checked = (
            {"parse_float": _finite_float, "parse_int": _int64}
            if _RISKY_NUMBER.search(payload)
            else {}
        )
        document = bounded_loads(
            payload,
            limits.max_payload_bytes,
            MAX_DEPTH,
            parse_constant=_no_constant,
            **checked,
        )
    except _UnsafeError as exc:
        return Rejected("unsafe", str(exc))
    except JsonBoundsError as exc:
        return Rejected("json", f"not accepted: {exc}")
    except (ValueError, RecursionError) as exc:
        return Rejected("json", f"not valid JSON: {safe_text(str(exc), 300)}")
    if not isinstance(document, dict):
        return Rejected("json", f"expected a JSON object, got {type(document).__name__}")
    # NUL and surrogates can only arrive as JSON \u escapes: most payloads skip the walk.
    unsafe = _bad_string(document) if b"\\u" in payload else None
    if unsafe is not None:
        return Rejected("unsafe", unsafe)
    try:
        message = MODELS[kind].model_validate(document)
    except ValidationError as exc:
        return Rejected("invalid", safe_text(f"invalid {kind}: {describe_validation(exc)}"))
    except (ValueError, TypeError, RecursionError) as exc:
        return Rejected("invalid", safe_text(f"invalid {kind}: {exc}"))
    claimed = getattr(message, "device_id", None)
    if claimed != device_id:
        return Rejected(
            "device_mismatch",
            safe_text(f"payload device_id {claimed!r} differs from the topic's {device_id!r}"),
        )
    if isinstance(message, Thumbnail):
        if len(message.data) > limits.thumbnail_max_bytes:
            return Rejected(
                "oversize",
                f"thumbnail is {len(message.data)} bytes; the limit is "
                f"{limits.thumbnail_max_bytes}",
            )
        if not message.data.startswith(JPEG_MAGIC):
            return Rejected("invalid", "thumbnail data is not a JPEG file")
    return Accepted(kind, device_id, message, document)
