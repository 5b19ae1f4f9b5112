"""The shipped Prometheus rules and config: promtool's checks and unit tests."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.monitoring.prometheus import PROMETHEUS_DIR, RULE_FILES, find_tool

PROMTOOL = find_tool("promtool")


def _promtool() -> str:
    if PROMTOOL is None:
        reason = "promtool is missing: `make system-deps` installs it (Debian: prometheus)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert PROMTOOL is not None
    return PROMTOOL


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_promtool(), *args], capture_output=True, text=True, timeout=120, cwd=PROMETHEUS_DIR
    )


def test_promtool_accepts_every_rule_file() -> None:
    result = _run("check", "rules", *(str(f) for f in RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_unit_tests_pass() -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*_test.yml"))
    assert tests
    result = _run("test", "rules", *(str(t) for t in tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_unit_test() -> None:
    alerts = {
        rule["alert"]
        for f in RULE_FILES
        for group in yaml.safe_load(f.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested = {
        case["alertname"]
        for t in (PROMETHEUS_DIR / "tests").glob("*_test.yml")
        for test in yaml.safe_load(t.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts - tested == set()


def test_every_alert_says_how_bad_and_what_happened() -> None:
    for f in RULE_FILES:
        for group in yaml.safe_load(f.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    assert rule["labels"]["severity"] in ("warning", "critical"), rule
                    assert rule["annotations"]["summary"], rule
                    assert rule["annotations"]["description"], rule


def test_shipped_prometheus_config_is_valid(tmp_path: Path) -> None:
    """promtool checks the config with its secret and target paths pointed at a temp folder."""
    _promtool()
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    text = text.replace("/etc/prometheus/secrets/", f"{tmp_path}/").replace(
        "/etc/prometheus/targets/", f"{tmp_path}/"
    )
    for name in ("bridge-token", "agent-token"):
        (tmp_path / name).write_text("token\n")
    shutil.copy(PROMETHEUS_DIR / "targets" / "agents.yml.example", tmp_path / "agents.yml")
    (tmp_path / "prometheus.yml").write_text(text)
    result = subprocess.run(
        [_promtool(), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run(
        [
            _promtool(),
            "check",
            "service-discovery",
            str(tmp_path / "prometheus.yml"),
            "cultivai-agent",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "cam-veg-1" in result.stdout


def test_no_shipped_file_is_loaded_as_a_camera_list() -> None:
    """The example targets must not be scraped: its cameras would be down forever."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    globs = [
        pattern
        for job in config["scrape_configs"]
        for sd in job.get("file_sd_configs", [])
        for pattern in sd["files"]
    ]
    assert globs
    shipped = sorted((PROMETHEUS_DIR / "targets").iterdir())
    assert shipped, "the example camera list is missing"
    for pattern in globs:
        assert pattern.startswith("/etc/prometheus/targets/"), pattern
        name_glob = pattern.rsplit("/", 1)[1]
        loaded = [f.name for f in shipped if f.match(name_glob)]
        assert loaded == [], f"{pattern} loads the shipped {loaded}"
