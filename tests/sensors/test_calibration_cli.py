"""`cultivai-edge calibrate-thermal` against the synthetic camera and the fake thermal array."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from edge.cli import main

TRUTH = {"scale_x": 0.6, "offset_x": 0.22, "scale_y": 0.65, "offset_y": 0.17}


def write_config(tmp_path: Path, sensors: dict[str, object]) -> Path:
    path = tmp_path / "edge.yaml"
    data = {
        "device": {"id": "cal-cam"},
        "camera": {"backend": "synthetic", "width": 640, "height": 480, "start_day": 20},
        "storage": {"dir": str(tmp_path / "data"), "min_free_mb": 0},
        "model": {"enabled": False},
        "logging": {"format": "text"},
        "sensors": sensors,
    }
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_calibration_prints_the_registration_the_thermal_array_was_mounted_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The fake array renders the leaves through TRUTH; the fit must find it again.
    config = write_config(
        tmp_path, {"thermal": {"model": "fake", "noise_c": 0.1}, "registration": TRUTH}
    )
    assert main(["calibrate-thermal", "--config", str(config)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    found = printed["sensors"]["registration"]
    for key, value in TRUTH.items():
        assert found[key] == pytest.approx(value, abs=0.05), key


def test_calibration_without_a_thermal_sensor_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, {})
    assert main(["calibrate-thermal", "--config", str(config)]) == 1
    assert "no thermal sensor configured" in capsys.readouterr().err
