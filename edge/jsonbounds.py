"""Size and nesting bounds for untrusted JSON, checked before the parser sees the text.

Python's `json` recurses once per nesting level: a payload of a hundred thousand `[`
raises RecursionError (which kills a thread that did not expect it), and payloads just
under the recursion limit are slow to parse and to validate. Device commands and the
bridge's decoder both parse through `loads`. Pure Python, no device dependencies: the
bridge imports it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
# A whole string (escapes included, maybe unterminated) or one bracket: the scan visits
# only these, so brackets inside strings do not count.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)


class JsonBoundsError(ValueError):
    """A payload too large or too deeply nested to be parsed safely."""


def nests_deeper(text: str, max_depth: int) -> bool:
    """True when JSON `text` nests arrays/objects deeper than `max_depth` (strings ignored)."""
    level = 0
    for match in _TOKENS.finditer(text):
        first = match.group()[0]
        if first in "[{":
            level += 1
            if level > max_depth:
                return True  # stop here: the rest of a hostile payload is not worth a look
        elif first != '"':
            level -= 1
    return False


def check_depth(text: str, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonBoundsError when JSON `text` nests deeper than `max_depth`."""
    # Fewer brackets than the bound cannot nest deeper than it: counting is done in C.
    if text.count("[") + text.count("{") <= max_depth:
        return
    if nests_deeper(text, max_depth):
        raise JsonBoundsError(f"payload nests more than {max_depth} levels deep")


def loads(payload: bytes, max_bytes: int, max_depth: int = MAX_DEPTH, **kwargs: Any) -> Any:
    """Parse UTF-8 JSON within the bounds; raises ValueError (never RecursionError)."""
    if len(payload) > max_bytes:
        raise JsonBoundsError(f"payload is {len(payload)} bytes; the limit is {max_bytes}")
    # Decoded first so the scan sees the same characters as the parser (RFC 8259: UTF-8).
    text = payload.decode("utf-8")
    check_depth(text, max_depth)
    try:
        return json.loads(text, **kwargs)
    except RecursionError:  # unreachable within the bounds; kept so no caller ever sees it
        raise JsonBoundsError("payload nests too deep to parse") from None
