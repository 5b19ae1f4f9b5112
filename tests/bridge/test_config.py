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
    assert "mqtt.port: must be at least 1; got 0" in problems
    assert any(p.startswith("mqtt.group: must be 1-64 letters") and "'a/b'" in p for p in problems)
    assert "mqtt.colour: unknown setting (check spelling and section)" in problems
    assert not [p for p in problems if "Input should" in p]
    assert "batching.max_seconds: must be more than 0; got -1" in problems


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


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        (
            "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 9))
            + "mqtt: {host: *a8}\n",
            "refused: expands to more than 10000 values",
        ),
        ("mqtt: {port: " + "[" * 5000 + "]" * 5000 + "}\n", "refused: nested deeper than 32"),
        ("mqtt: {port: " + "9" * 5000 + "}\n", "refused: a number longer than 100 digits"),
    ],
    ids=["alias-bomb", "deep-nesting", "5000-digit-int"],
)
def test_check_config_refuses_hostile_yaml_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, refusal: str
) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(text)
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and refusal in err[0] and "Traceback" not in err[0]


@pytest.mark.parametrize("field", ["client_id", "group"])
def test_ids_with_a_trailing_newline_are_refused(field: str) -> None:
    (problem,) = _problems({"mqtt": {field: "bridge1\n"}})
    assert problem.startswith(f"mqtt.{field}: must be 1-64 letters")


def test_check_config_names_every_missing_secret_and_tls_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").write_text("")
    path = tmp_path / "bridge.yaml"
    path.write_text(
        f"mqtt: {{username: b, password_file: {tmp_path}/nope, tls: {{ca_file: {tmp_path}/ca}}}}\n"
        f"database: {{password_file: {tmp_path}/empty}}\n"
        f"http: {{token_file: {tmp_path}}}\n"
    )
    assert main(["check-config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}: mqtt.password_file: file {tmp_path}/nope does not exist",
        f"{path}: mqtt.tls.ca_file: file {tmp_path}/ca does not exist",
        f"{path}: database.password_file: file {tmp_path}/empty is empty",
        f"{path}: http.token_file: {tmp_path} is a folder, not a file",
    ]
