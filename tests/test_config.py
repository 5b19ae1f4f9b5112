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
    lines = problems({"device": {"id": "a"}, "mqtt": {"hots": "x"}, "gpio": {"zzz": 1}})
    assert lines == [
        "mqtt.hots: unknown setting; did you mean 'host'?",
        "gpio.zzz: unknown setting (check spelling and section)",
    ]


def test_misspelt_keys_get_a_did_you_mean_at_every_level() -> None:
    lines = problems(
        {
            "devcie": {"id": "a"},
            "device": {"id": "a"},
            "camera": {"backend": "replay", "folder": "x", "foldr": "y"},
            "port": 1883,
        }
    )
    assert "devcie: unknown setting; did you mean 'device'?" in lines
    assert "camera.foldr: unknown setting; did you mean 'folder'?" in lines
    assert (
        "port: unknown setting; it belongs in a section: did you mean mqtt.port or web.port?"
        in lines
    )


def test_messages_are_plain_words_not_pydantics() -> None:
    lines = problems(
        {
            "device": {"id": "a"},
            "camera": {"backend": "webcam"},
            "mqtt": {"port": 0, "protocol": "4", "enabled": "perhaps"},
            "schedule": {"interval_s": "often", "lights_on": "6 am", "lights_off": "18:00"},
        }
    )
    assert (
        "camera.backend: 'webcam' is not allowed; choose one of: synthetic, replay, opencv, "
        "picamera2" in lines
    )
    assert "mqtt.port: must be at least 1; got 0" in lines
    assert "mqtt.protocol: must be one of: auto, 5, 3.1.1; got '4'" in lines
    assert "mqtt.enabled: must be true or false; got 'perhaps'" in lines
    assert "schedule.interval_s: must be a whole number; got 'often'" in lines
    assert "schedule.lights_on: must be a time of day such as 06:30; got '6 am'" in lines
    assert not [line for line in lines if "Input " in line or "input_value" in line]


def test_a_device_id_with_a_trailing_newline_is_refused() -> None:
    (line,) = problems({"device": {"id": "cam1\n"}})
    assert line.startswith("device.id: must be 1-64 letters") and line.endswith("'cam1\\n'")


def test_a_huge_value_is_clipped_in_the_error_line() -> None:
    (line,) = problems({"device": {"id": "x" * 100_000}})
    assert len(line) < 400 and "(100002 characters)" in line


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
    assert lines[0].startswith("camera.backend: 'webcam' is not allowed")


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


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    code = main(["check-config", str(path)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line.removeprefix(f"{path}: ") for line in err.splitlines()]


def test_check_config_refuses_an_alias_bomb_without_expanding_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    text = "\n".join(lines) + "\ndevice:\n  id: x\n  site: *a8\n"
    code, err = _check(tmp_path, text, capsys)
    assert code == 2
    assert len(err) == 1 and "refused: expands to more than 10000 values" in err[0]
    assert "lol" not in err[0]


@pytest.mark.parametrize(
    ("value", "refusal"),
    [
        ("[" * 5000 + "]" * 5000, "refused: nested deeper than 32 levels"),
        ("{a: " * 5000 + "1" + "}" * 5000, "refused: nested deeper than 32 levels"),
        ("9" * 5000, "refused: a number longer than 100 digits"),
    ],
    ids=["deep-list", "deep-map", "5000-digit-int"],
)
def test_check_config_refuses_hostile_yaml_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, refusal: str
) -> None:
    code, err = _check(tmp_path, f"device:\n  id: x\nmqtt:\n  port: {value}\n", capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith("line 4, column ") and refusal in err[0]


def test_a_hostile_environment_override_is_an_error_not_a_crash() -> None:
    lines = problems_env({"CULTIVAI_EDGE__MQTT__PORT": "9" * 5000})
    assert len(lines) == 1 and lines[0].startswith(
        "mqtt.port: must be a whole number of sensible size; got '9999"
    )


def problems_env(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_data({"device": {"id": "a"}}, env=env)
    return info.value.problems


def test_check_config_checks_every_path_and_reports_all_problems_in_one_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "labels.txt").write_text("healthy\n")
    (tmp_path / "short-token").write_text("abc\n")
    (tmp_path / "bad-ca.pem").write_text("not a certificate\n")
    text = f"""
device: {{id: cam1}}
camera: {{backend: replay, folder: {tmp_path}/photos}}
model: {{dir: {tmp_path}/model}}
mqtt:
  enabled: true
  username: cam1
  password_file: {tmp_path}/mqtt-password
  tls: {{ca_file: {tmp_path}/bad-ca.pem, cert_file: {tmp_path}/c.pem, key_file: {tmp_path}/k.pem}}
  prot: 5
web: {{metrics_token_file: {tmp_path}/short-token}}
storage: {{dir: {tmp_path}/not-a-folder/data}}
schedule: {{lights_on: "06:00"}}
"""
    code, err = _check(tmp_path, text, capsys)
    assert code == 2
    assert sorted(err) == sorted(
        [
            "schedule: lights_on and lights_off must be set together (or both null)",
            "mqtt.prot: unknown setting; did you mean 'port'?",
            f"warning: camera.folder: folder {tmp_path}/photos does not exist",
            f"warning: model.dir: {tmp_path}/model has no model.tflite, manifest.json",
            f"mqtt.password_file: file {tmp_path}/mqtt-password does not exist",
            f"mqtt.tls.cert_file: file {tmp_path}/c.pem does not exist",
            f"mqtt.tls.key_file: file {tmp_path}/k.pem does not exist",
            f"web.metrics_token_file: file {tmp_path}/short-token holds fewer than 16 characters",
            f"storage.dir: {tmp_path}/not-a-folder/data cannot be created: "
            f"{tmp_path}/not-a-folder is a file",
        ]
    )


def test_check_config_refuses_a_ca_file_that_is_not_a_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    text = (
        f"device: {{id: a}}\nstorage: {{dir: {tmp_path}}}\n"
        f"mqtt: {{enabled: true, tls: {{ca_file: {tmp_path}/ca.pem}}}}\n"
    )
    code, err = _check(tmp_path, text, capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(
        f"mqtt.tls.ca_file: {tmp_path}/ca.pem is not a PEM CA"
    )


def test_paths_of_disabled_parts_are_not_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        f"device: {{id: a}}\nstorage: {{dir: {tmp_path}}}\n"
        f"mqtt: {{username: a, password_file: {tmp_path}/nope}}\n"
    )
    assert _check(tmp_path, text, capsys) == (0, [])


def test_run_with_a_missing_password_file_exits_2_with_one_line_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(
        f"device: {{id: a}}\nstorage: {{dir: {tmp_path}/data}}\nmodel: {{enabled: false}}\n"
        f"mqtt: {{enabled: true, username: a, password_file: {tmp_path}/nope}}\n"
    )
    assert main(["run", "--config", str(path), "--max-captures", "1"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{path}: mqtt.password_file: file {tmp_path}/nope does not exist"]


def test_paths_the_agent_starts_without_are_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text(
        f"device: {{id: a}}\nstorage: {{dir: {tmp_path}}}\nmodel: {{dir: {tmp_path}/m}}\n"
    )
    assert main(["check-config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == f"{path}: ok (1 warnings)"
    assert err.splitlines() == [f"{path}: warning: model.dir: folder {tmp_path}/m does not exist"]
