"""Untrusted bytes become a validated message or a dead-letter reason, never an exception."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_bridge.decode import Accepted, Limits, Rejected, decode, parse_topic
from tests.bridge.factory import alert_message, observation, observation_message, status_message

LIMITS = Limits(max_payload_bytes=4096, thumbnail_max_bytes=1024)
TOPIC = "cultivai/v1/cam-1/observation"


def _valid() -> dict[str, Any]:
    return observation("cam-1", 3).model_dump(mode="json")


def _reason(payload: bytes, topic: str = TOPIC) -> str:
    decoded = decode(topic, payload, LIMITS)
    assert isinstance(decoded, Rejected), decoded
    return decoded.reason


def test_a_valid_observation_is_accepted_with_its_whole_payload() -> None:
    topic, payload = observation_message("cam-1", 3)
    decoded = decode(topic, payload, LIMITS)
    assert isinstance(decoded, Accepted)
    assert (decoded.kind, decoded.device_id) == ("observation", "cam-1")
    assert decoded.document == json.loads(payload)


def test_unknown_fields_from_newer_devices_are_kept_in_the_payload() -> None:
    document = {**_valid(), "leaf_temp_c": 24.5}
    decoded = decode(TOPIC, json.dumps(document).encode(), LIMITS)
    assert isinstance(decoded, Accepted)
    assert decoded.document["leaf_temp_c"] == 24.5


@pytest.mark.parametrize(
    ("message", "kind"),
    [(status_message("cam-1"), "status"), (alert_message("cam-1", 1), "alert")],
)
def test_status_and_alerts_are_accepted(message: tuple[str, bytes], kind: str) -> None:
    decoded = decode(*message, LIMITS)
    assert isinstance(decoded, Accepted) and decoded.kind == kind


def test_malformed_json_is_rejected() -> None:
    assert _reason(b'{"device_id": "cam-1", "seq": ') == "json"


def test_a_json_array_is_rejected() -> None:
    assert _reason(b"[1, 2, 3]") == "json"


def test_wrong_types_are_rejected_naming_the_field() -> None:
    decoded = decode(TOPIC, json.dumps({**_valid(), "seq": "three"}).encode(), LIMITS)
    assert isinstance(decoded, Rejected) and decoded.reason == "invalid"
    assert "seq" in decoded.error


def test_missing_fields_are_rejected_naming_the_field() -> None:
    document = _valid()
    del document["canopy"]
    decoded = decode(TOPIC, json.dumps(document).encode(), LIMITS)
    assert isinstance(decoded, Rejected) and "canopy" in decoded.error


def test_a_payload_for_another_device_is_rejected() -> None:
    payload = json.dumps({**_valid(), "device_id": "cam-2"}).encode()
    assert _reason(payload) == "device_mismatch"


def test_an_oversize_payload_is_rejected_before_parsing() -> None:
    assert _reason(b"{" + b" " * 5000 + b"}") == "oversize"


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e999}',
        b'{"a": 123456789012345678901234}',
        b'{"a": "nul \\u0000 inside"}',
        b'{"a": "lone \\ud800 surrogate"}',
        b'{"\\u0000": 1}',
    ],
)
def test_values_the_database_cannot_store_are_rejected(payload: bytes) -> None:
    assert _reason(payload) == "unsafe"


def test_deep_nesting_is_rejected_not_raised() -> None:
    assert _reason(b"[" * 2000 + b"]" * 2000) == "json"


@pytest.mark.parametrize(
    "topic",
    [
        "cultivai/v1/cam-1/unknown",
        "cultivai/v1/cam 1/observation",
        "cultivai/v2/cam-1/observation",
        "cultivai/v1/cam-1/observation/extra",
        "cultivai/v1/" + "x" * 65 + "/observation",
    ],
)
def test_topics_that_are_not_device_topics_are_rejected(topic: str) -> None:
    assert parse_topic(topic) is None
    assert _reason(json.dumps(_valid()).encode(), topic) == "topic"


def test_a_thumbnail_must_be_a_small_jpeg() -> None:
    topic = "cultivai/v1/cam-1/thumbnail"

    def thumb(data: bytes) -> bytes:
        body = {"device_id": "cam-1", "seq": 3, "data": base64.b64encode(data).decode()}
        return json.dumps(body).encode()

    assert isinstance(decode(topic, thumb(b"\xff\xd8\xff" + b"j" * 100), LIMITS), Accepted)
    assert _reason(thumb(b"\xff\xd8\xff" + b"j" * 2000), topic) == "oversize"
    assert _reason(thumb(b"GIF89a"), topic) == "invalid"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
FIELDS = ["device_id", "seq", "captured_at", "canopy", "exposure", "image", "health", "model"]


@st.composite
def mutated_observations(draw: st.DrawFn) -> bytes:
    """A valid observation with some fields replaced by arbitrary JSON, or dropped."""
    document = _valid()
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        if draw(st.booleans()):
            document.pop(field, None)
        else:
            document[field] = draw(JSON_VALUES)
    return json.dumps(document).encode()


@settings(max_examples=300, deadline=None)
@given(payload=st.binary(max_size=600), topic=st.sampled_from([TOPIC, "cultivai/v1/x/status"]))
def test_decode_never_raises_on_arbitrary_bytes(payload: bytes, topic: str) -> None:
    assert isinstance(decode(topic, payload, LIMITS), (Accepted, Rejected))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=mutated_observations())
def test_decode_never_raises_on_mutated_observations(payload: bytes) -> None:
    assert isinstance(decode(TOPIC, payload, LIMITS), (Accepted, Rejected))


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES, kind=st.sampled_from(["observation", "alert", "status", "stats"]))
def test_decode_never_raises_on_arbitrary_json(value: object, kind: str) -> None:
    payload = json.dumps(value).encode()
    assert isinstance(decode(f"cultivai/v1/cam-1/{kind}", payload, LIMITS), (Accepted, Rejected))
