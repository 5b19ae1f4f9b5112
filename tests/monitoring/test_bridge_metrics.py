"""The bridge exports every labelled counter at 0 from the start, so alerts see the first rise."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cloud_bridge.decode import KINDS
from cloud_bridge.metrics import DATABASE_ERROR_KINDS, DEAD_LETTER_REASONS, BridgeMetrics


def _samples(metrics: BridgeMetrics) -> dict[tuple[str, str], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, next(iter(s.labels.values()), "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_dead_letter_reason_and_database_error_starts_at_zero() -> None:
    samples = _samples(BridgeMetrics())
    for reason in DEAD_LETTER_REASONS:
        assert samples[("cultivai_bridge_dead_letters_total", reason)] == 0
    for kind in DATABASE_ERROR_KINDS:
        assert samples[("cultivai_bridge_database_errors_total", kind)] == 0
    for kind in KINDS:
        assert samples[("cultivai_bridge_messages_stored_total", kind)] == 0


def test_the_reasons_are_the_ones_the_decoder_gives() -> None:
    assert {"oversize", "json", "invalid", "database"} <= set(DEAD_LETTER_REASONS)
    metrics = BridgeMetrics()
    metrics.dead_letters.labels("invalid").inc(3)
    assert _samples(metrics)[("cultivai_bridge_dead_letters_total", "invalid")] == 3
