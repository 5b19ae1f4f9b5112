"""The shared JSON bounds: size and nesting are refused before parsing, strings are text."""

from __future__ import annotations

import pytest

from edge.jsonbounds import JsonBoundsError, loads, nests_deeper


@pytest.mark.parametrize(
    ("text", "deeper_than_2"),
    [
        ("[[]]", False),
        ("[[[]]]", True),
        ('["[[[[", {"a": "{{{{"}]', False),
        ('["\\"[[[[", 1]', False),  # an escaped quote does not end the string
        ("[] [] [] [] []", False),  # many brackets, shallow
        ('{"a": {"b": {"c": 1}}}', True),
        ('"[[[[[', False),  # an unterminated string hides nothing
    ],
)
def test_nesting_is_measured_outside_strings(text: str, deeper_than_2: bool) -> None:
    assert nests_deeper(text, 2) is deeper_than_2


def test_loads_refuses_size_depth_and_bad_utf8_with_plain_words() -> None:
    with pytest.raises(JsonBoundsError, match="100001 bytes; the limit is 100000"):
        loads(b" " * 100001, 100000)
    with pytest.raises(JsonBoundsError, match="more than 32 levels deep"):
        loads(b"[" * 100000 + b"]" * 100000, 10**6)
    with pytest.raises(ValueError, match="utf-8"):
        loads(b'{"a": "\xff"}', 100)
    assert loads(b'{"a": [1, {"b": 2.5}]}', 100) == {"a": [1, {"b": 2.5}]}
