"""Deeply nested payloads are refused by a scan before the JSON parser recurses into them."""

from __future__ import annotations

import json

import pytest

from cloud_bridge.decode import Accepted, Limits, Rejected, decode
from tests.bridge.factory import observation

LIMITS = Limits(max_payload_bytes=256 * 1024, thumbnail_max_bytes=1024)
TOPIC = "cultivai/v1/cam-1/observation"


def _with_extra(extra: str) -> bytes:
    document = observation("cam-1", 3).model_dump(mode="json")
    text = json.dumps(document)
    return (text[:-1] + f', "extra": {extra}}}').encode()


@pytest.mark.parametrize("levels", [100, 500, 900, 30000])
def test_a_valid_observation_carrying_deep_nesting_is_a_json_dead_letter(levels: int) -> None:
    decoded = decode(TOPIC, _with_extra("[" * levels + "]" * levels), LIMITS)
    assert isinstance(decoded, Rejected), decoded
    assert decoded.reason == "json"
    assert "more than 32 levels deep" in decoded.error


def test_brackets_inside_strings_and_moderate_nesting_are_accepted() -> None:
    extra = '{"note": "' + "[{" * 500 + '", "a": [[[[{"b": [1, "]]]\\""]}]]]]}'
    decoded = decode(TOPIC, _with_extra(extra), LIMITS)
    assert isinstance(decoded, Accepted), decoded


def test_non_utf8_json_is_refused_with_a_reason() -> None:
    payload = json.dumps(observation("cam-1", 3).model_dump(mode="json")).encode("utf-16")
    decoded = decode(TOPIC, payload, LIMITS)
    assert isinstance(decoded, Rejected) and decoded.reason == "json"
