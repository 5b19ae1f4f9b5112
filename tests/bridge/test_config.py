"""The bridge's config and commands: clear errors, one line per problem, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from cloud_bridge.cli import main
from cloud_bridge.config import BridgeConfig, config_from_data
from cloud_bridge.errors import ConfigError


def _problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_data(data, env={})
    return info.value.problems


def test_an_empty_file_is_a_complete_config() -> None:
    config = config_from_data(None, env={})
    assert config.database.url.startswith("sqlite:")
    assert config.mqtt.group == "cultivai-bridge"


def test_every_field_has_a_description() -> None:
    def walk(model: type) -> list[str]:
        missing = []
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            if not field.description:
                missing.append(f"{model.__name__}.{name}")
            annotation = field.annotation
            for candidate in getattr(annotation, "__args__", (annotation,)):
                if isinstance(candidate, type) and hasattr(candidate, "model_fields"):
                    missing += walk(candidate)
        return missing

    assert walk(BridgeConfig) == []


def test_each_problem_names_the_field_the_value_and_what_is_allowed() -> None:
    problems = _problems(
        {
            "mqtt": {"port": 0, "group": "a/b", "colour": "red"},
            "batching": {"max_seconds": -1},
        }
    )
    assert "mqtt.port: Input should be greater than or equal to 1; got 0" in problems
    assert any(p.startswith("mqtt.group: must be 1-64 letters") and "'a/b'" in p for p in problems)
    assert "mqtt.colour: unknown setting (check spelling and section)" in problems
    assert any(
        p.startswith("batching.max_seconds: Input should be greater than 0") for p in problems
    )


def test_a_database_url_with_a_password_is_refused() -> None:
    (problem,) = _problems({"database": {"url": "postgresql+psycopg://u:pw@db/x"}})
    assert problem.startswith("database.url: must not contain a password")


def test_a_postgresql_url_must_use_psycopg() -> None:
    (problem,) = _problems({"database": {"url": "postgresql+psycopg2://u@db/x"}})
    assert "postgresql+psycopg://" in problem


def test_receive_maximum_must_cover_a_batch() -> None:
    (problem,) = _problems({"mqtt": {"receive_maximum": 100}, "batching": {"max_messages": 500}})
    assert "mqtt.receive_maximum (100) must be at least batching.max_messages (500)" in problem


def test_environment_variables_override_single_fields() -> None:
    env = {"CULTIVAI_BRIDGE__MQTT__HOST": "broker.lan", "CULTIVAI_BRIDGE__HTTP__PORT": "9000"}
    config = config_from_data({"mqtt": {"host": "localhost"}}, env=env)
    assert (config.mqtt.host, config.http.port) == ("broker.lan", 9000)


def test_check_config_exits_0_for_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("mqtt: {host: broker.lan}\n")
    assert main(["check-config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"{path}: ok"


def test_check_config_exits_2_with_one_line_per_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("mqtt: {port: 99999}\nhttp: {rate_limit_per_minute: 0}\n")
    assert main(["check-config", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith(f"{path}: ") for line in lines)


def test_check_config_reports_invalid_yaml_with_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text("mqtt: {host: [\n")
    assert main(["check-config", str(path)]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_migrate_command_creates_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"database: {{url: 'sqlite:///{tmp_path}/fleet.sqlite3'}}\nlogging: {{level: WARNING}}\n"
    )
    assert main(["migrate", "--config", str(path)]) == 0
    assert "migrated from empty" in capsys.readouterr().out
    assert main(["migrate", "--config", str(path)]) == 0
    assert "already at" in capsys.readouterr().out
    engine = create_engine(f"sqlite:///{tmp_path}/fleet.sqlite3")
    assert "observations" in inspect(engine).get_table_names()


def test_run_refuses_an_unmigrated_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"database: {{url: 'sqlite:///{tmp_path}/fleet.sqlite3'}}\nlogging: {{level: ERROR}}\n"
    )
    assert main(["run", "--config", str(path)]) == 1
    assert "run `cultivai-bridge migrate` first" in capsys.readouterr().err


def test_a_missing_secret_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"database: {{url: 'sqlite:///{tmp_path}/f.sqlite3', password_file: {tmp_path}/nope}}\n"
    )
    assert main(["migrate", "--config", str(path)]) == 1
    assert "database password file" in capsys.readouterr().err


def test_an_unreachable_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "database: {url: 'postgresql+psycopg://bridge@127.0.0.1:1/cultivai', "
        "connect_timeout_s: 1}\nlogging: {level: ERROR}\n"
    )
    assert main(["migrate", "--config", str(path)]) == 1
    assert "error: cannot reach the database postgresql+psycopg://bridge@127.0.0.1:1" in (
        capsys.readouterr().err
    )
