"""site.yml provisions the sandbox fleet, a second run changes nothing, bad config is refused."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess

import pytest

from tests.fleet.sandbox import DEVICES, SECRETS, Sandbox, device_password

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_site_playbook_provisions_every_host(fleet: Sandbox) -> None:
    first = fleet.site_runs[0]
    assert first.returncode == 0, first.explain()
    assert set(first.recap) >= {*DEVICES, "broker", "bridge", "db"}
    for host in (*DEVICES, "broker", "bridge"):
        assert first.recap[host]["failed"] == 0
        assert first.recap[host]["changed"] > 0, host


def test_second_site_run_changes_nothing(fleet: Sandbox) -> None:
    second = fleet.site_runs[1]
    assert second.returncode == 0, second.explain()
    changed = {
        host: counts["changed"] for host, counts in second.recap.items() if counts["changed"]
    }
    assert changed == {}, second.explain()


def test_a_bad_config_value_fails_that_host_and_keeps_its_running_config(fleet: Sandbox) -> None:
    config = fleet.edge_config("dev-b")
    before = config.read_bytes()
    bad = json.dumps({"edge_device_schedule": {"interval_s": 0}})
    run = fleet.playbook("provision.yml", "-e", "cultivai_devices=dev-b", "-e", bad)
    assert run.returncode != 0
    assert run.recap["dev-b"]["failed"] == 1, run.explain()
    assert "schedule.interval_s" in run.output, run.explain()
    assert config.read_bytes() == before


def test_secrets_are_readable_only_by_their_service(fleet: Sandbox) -> None:
    password_file = fleet.device_path("dev-a", "etc/cultivai/mqtt-password")
    assert password_file.read_text().strip() == device_password("dev-a")
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o640
    broker_passwd = fleet.broker.prefix / "etc/mosquitto/cultivai.passwd"
    assert stat.S_IMODE(broker_passwd.stat().st_mode) == 0o600
    text = broker_passwd.read_text()
    assert [line.split(":")[0] for line in text.splitlines()] == [
        *DEVICES,
        "cultivai-bridge",
        "fleet-operator",
    ]
    assert device_password("dev-a") not in text
    assert SECRETS["vault_mqtt_bridge_password"] not in text
    assert "CHANGE-ME" not in fleet.edge_config("dev-a").read_text()


def test_rendered_units_are_hardened_and_valid(fleet: Sandbox) -> None:
    units = fleet.device_path("dev-a", "etc/systemd/system")
    agent = (units / "cultivai-edge.service").read_text()
    data_dir = fleet.device_path("dev-a", "var/lib/cultivai")
    for line in (
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ReadWritePaths={data_dir}",
        "PrivateTmp=yes",
    ):
        assert line in agent.splitlines()
    bridge_unit = fleet.bridge.prefix / "etc/systemd/system/cultivai-bridge.service"
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    for unit in [*sorted(units.iterdir()), bridge_unit]:
        proc = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True
        )
        assert proc.returncode == 0 and proc.stderr == "", f"{unit.name}: {proc.stderr}"


def test_rendered_log_rotation_is_valid(fleet: Sandbox) -> None:
    rotation = fleet.device_path("dev-a", "etc/logrotate.d/cultivai-edge")
    log = fleet.device_path("dev-a", "var/log/cultivai/edge.log")
    assert rotation.read_text().startswith("# Managed by Ansible")
    assert str(log) in rotation.read_text()
