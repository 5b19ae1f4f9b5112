"""Configuration: defaults, validation messages, environment overrides, check-config."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import main
from edge.config import EdgeConfig, config_from_data, load_config
from edge.errors import ConfigError


def problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_data(data, env={})
    return info.value.problems


def test_a_file_with_only_device_id_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("device:\n  id: room1-cam1\n")
    cfg = load_config(path, env={})
    assert cfg.device.id == "room1-cam1"
    assert cfg.camera.backend == "synthetic"
    assert cfg.schedule.interval_s == 900
    assert cfg.mqtt.enabled is False


def every_field(model: type) -> list[tuple[str, object]]:
    out = []
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        out.append((f"{model.__name__}.{name}", field))
        annotation = field.annotation
        if isinstance(annotation, type) and hasattr(annotation, "model_fields"):
            out.extend(every_field(annotation))
    return out


def test_every_field_has_a_description() -> None:
    missing = [name for name, field in every_field(EdgeConfig) if not field.description]
    assert missing == []


def test_unknown_key_is_named_with_its_path() -> None:
    lines = problems({"device": {"id": "a"}, "mqtt": {"hots": "x"}})
    assert lines == ["mqtt.hots: unknown setting (check spelling and section)"]


def test_wrong_type_names_field_value_and_what_is_allowed() -> None:
    lines = problems({"device": {"id": "a"}, "mqtt": {"port": 70000}})
    assert len(lines) == 1
    assert lines[0].startswith("mqtt.port: ")
    assert "65535" in lines[0] and "70000" in lines[0]


def test_every_problem_gets_its_own_line() -> None:
    lines = problems(
        {"device": {"id": "bad/id"}, "schedule": {"interval_s": "often"}, "gpio": {"x": 1}}
    )
    assert [line.split(":")[0] for line in lines] == [
        "device.id",
        "schedule.interval_s",
        "gpio.x",
    ]


def test_missing_device_id_is_reported() -> None:
    assert problems({}) == ["device: required setting is missing"]


def test_camera_backend_fields_are_checked_per_backend() -> None:
    lines = problems({"device": {"id": "a"}, "camera": {"backend": "replay"}})
    assert lines == ["camera.folder: required setting is missing"]
    lines = problems({"device": {"id": "a"}, "camera": {"width": 640}})
    assert lines[0].startswith("camera.backend: required setting is missing")
    lines = problems({"device": {"id": "a"}, "camera": {"backend": "webcam"}})
    assert "camera" in lines[0] and "'picamera2'" in lines[0]


def test_photoperiod_needs_both_ends() -> None:
    lines = problems({"device": {"id": "a"}, "schedule": {"lights_on": "06:00"}})
    assert "lights_on and lights_off must be set together" in lines[0]


def test_unknown_time_zone_is_rejected() -> None:
    lines = problems({"device": {"id": "a"}, "schedule": {"timezone": "Mars/Olympus"}})
    assert lines[0].startswith("schedule.timezone: is not a known IANA time zone")


def test_environment_overrides_a_single_field() -> None:
    cfg = config_from_data(
        {"device": {"id": "a"}, "mqtt": {"host": "broker.local"}},
        env={"CULTIVAI_EDGE__MQTT__PORT": "8883", "OTHER": "x"},
    )
    assert cfg.mqtt.port == 8883
    assert cfg.mqtt.host == "broker.local"


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("device:\n  id: a\n mqtt: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems[0].startswith("line ")
    assert "invalid YAML" in info.value.problems[0]


def test_check_config_exits_0_on_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("device:\n  id: a\n")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok"


def test_check_config_exits_2_with_one_line_per_problem_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("device:\n  id: a\nmqtt:\n  port: nope\n  tls: {}\nstorage: 5\n")
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert all(line.startswith(f"{path}: ") for line in err)
    assert "Traceback" not in "\n".join(err)
    assert any("mqtt.tls.ca_file: required setting is missing" in line for line in err)


def test_check_config_on_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(tmp_path / "nope.yaml")]) == 2
    assert "file does not exist" in capsys.readouterr().err
