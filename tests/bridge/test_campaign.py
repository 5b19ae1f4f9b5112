"""The fault campaign, short: every seq each device produced is stored exactly once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.bridge.campaign import Campaign
from tests.bridge.pg import PgCluster
from tests.mqtt_broker import find_mosquitto

pytestmark = pytest.mark.slow

# `make soak` sets these for the long run.
DURATION_S = float(os.environ.get("CULTIVAI_CAMPAIGN_S", "40"))
SEED = int(os.environ.get("CULTIVAI_CAMPAIGN_SEED", "13"))
DEVICES = int(os.environ.get("CULTIVAI_CAMPAIGN_DEVICES", "3"))


def test_every_seq_is_stored_exactly_once_through_random_faults(
    tmp_path: Path, pg_cluster: PgCluster, pg_url: str, engine: Engine
) -> None:
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    campaign = Campaign(
        tmp_path, pg_cluster, pg_url, engine, SEED, devices=DEVICES, duration_s=DURATION_S
    )
    reports = campaign.run()
    summary = "\n".join([f"seed {SEED}, faults: {', '.join(campaign.faults)}"]) + "\n"
    summary += "\n".join(r.line() for r in reports)
    print(summary)
    assert all(r.produced > 0 for r in reports), summary
    assert [(r.lost, r.duplicated) for r in reports] == [(0, 0)] * len(reports), summary
