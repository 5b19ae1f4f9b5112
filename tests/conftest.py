"""Shared fixtures: configs on temp folders, a fake clock, the leaf dataset, mock pins."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from edge.clock import FakeClock
from edge.config import EdgeConfig, config_from_data

REPO = Path(__file__).resolve().parent.parent
DATASET_ENV = "CULTIVAI_LEAF_DATA"
DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "leaf-health"


@pytest.fixture
def leaf_dataset() -> Path:
    """The leaf-health dataset: skipped when absent, a failure when CI=true."""
    path = Path(os.environ.get(DATASET_ENV, DEFAULT_DATASET))
    if (path / "manifest.csv").is_file():
        return path
    reason = (
        f"leaf-health dataset not found at {path} (set {DATASET_ENV} to its folder; "
        "it is kept outside the repository)"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock starting at a fixed UTC time."""
    return FakeClock(datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc))


def make_config(data_dir: Path, **sections: Any) -> EdgeConfig:
    """A valid config storing under `data_dir`, with sections overridden."""
    data: dict[str, Any] = {
        "device": {"id": "test-cam"},
        "camera": {"backend": "synthetic"},
        "storage": {"dir": str(data_dir), "min_free_mb": 0},
        "model": {"enabled": False},
        "logging": {"format": "text"},
    }
    for name, value in sections.items():
        data[name] = {**data.get(name, {}), **value}
    return config_from_data(data, env={})


@pytest.fixture
def config(tmp_path: Path) -> EdgeConfig:
    """Default test config: synthetic camera, storage in tmp, model off."""
    return make_config(tmp_path / "data")


@pytest.fixture
def mock_factory() -> Iterator[Any]:
    """gpiozero's MockFactory, handed to devices explicitly (no global default)."""
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    """A private Mosquitto on a free port, anonymous access, persistence in tmp."""
    from tests.mqtt_broker import Broker, find_mosquitto

    if find_mosquitto() is None:
        reason = "mosquitto is not installed (make test installs the Debian package)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    instance = Broker(tmp_path / "broker").start()
    yield instance
    instance.stop()
