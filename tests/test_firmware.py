"""A/B firmware updates with real virtualenvs, real wheels and the real agent."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edge import firmware
from edge.errors import StorageError
from edge.firmware import FirmwareError, Layout
from tests.firmware_kit import REPO, build_wheel, service_script, tiny_wheel, wheelhouse

pytestmark = pytest.mark.slow


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`cultivai-edge ...` as its own process (so a SIGKILL hook kills only it)."""
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=900,
    )


def runs(layout: Layout) -> str:
    """What `current` runs: its entry point's answer to --version (asserts it works)."""
    proc = subprocess.run(
        [str(layout.current / "venv/bin/cultivai-edge"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture(scope="session")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    return {
        "good-1": tiny_wheel(out / "g1", "0.9.1"),
        "good-2": tiny_wheel(out / "g2", "0.9.2"),
        "crashes": tiny_wheel(out / "b", "0.9.3", "crashes-at-start"),
        "never": tiny_wheel(out / "n", "0.9.4", "never-starts"),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- pieces --------------------------------------------------------------------------


def test_release_is_named_like_the_ansible_role_names_it(wheels: dict[str, Path]) -> None:
    import hashlib

    wheel = wheels["good-1"]
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()[:12]
    assert firmware.release_name(wheel) == f"0.9.1-{sha}"
    with pytest.raises(FirmwareError, match="not a cultivai_edge wheel"):
        firmware.release_name(wheel.with_name("other-1.0-py3-none-any.whl"))


def test_a_damaged_state_file_is_an_error_naming_it(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.state_file.write_text("{not json")
    with pytest.raises(FirmwareError, match=r"firmware-state\.json is damaged"):
        firmware.read_state(layout)


def test_switching_a_link_never_leaves_it_missing(tmp_path: Path) -> None:
    a, b = tmp_path / "releases/a", tmp_path / "releases/b"
    a.mkdir(parents=True)
    b.mkdir()
    link = tmp_path / "current"
    firmware.point(link, a)
    firmware.point(link, b)
    assert os.readlink(link) == str(b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "releases"]


# -- power cuts ----------------------------------------------------------------------

# Every step the updater can be cut at; `make firmware-campaign` runs them all,
# `make test` a short set (one per phase: install, switch, rollback).
ALL_STEPS = [
    "venv-created",
    "installed",
    "marked",
    "trial-written",
    "previous-linked",
    "current-switched",
    "confirmed",
    "database-checked",
    "rollback-current",
]
SHORT_STEPS = ["installed", "current-switched", "rollback-current"]
INSTALL_STEPS = [
    "venv-created",
    "installed",
    "marked",
    "trial-written",
    "previous-linked",
    "current-switched",
]


def test_a_power_cut_at_any_step_leaves_a_working_current(
    tmp_path: Path, wheels: dict[str, Path]
) -> None:
    root = tmp_path / "opt"
    layout = Layout(root)
    args = ["firmware", "--root", str(root), "--no-service", "--config", str(tmp_path / "none")]
    assert cli(*args, "install", str(wheels["good-1"]), "--no-wait", "--extras", "").returncode == 0
    assert cli(*args, "confirm").returncode == 0
    # A release that cannot even say its version is refused before anything moves.
    never = cli(*args, "install", str(wheels["never"]), "--no-wait", "--extras", "")
    assert never.returncode == 1
    assert "does not start" in never.stderr and "nothing was switched" in never.stderr
    assert runs(layout) == "cultivai-edge 0.9.1"
    campaign = os.environ.get("CULTIVAI_FIRMWARE_CAMPAIGN", "") == "1"
    results = []
    boot = 0
    for step in ALL_STEPS if campaign else SHORT_STEPS:
        boot += 1
        hook = {firmware.CRASH_ENV: step, "CULTIVAI_BOOT_ID": f"boot-{boot}"}
        if step in INSTALL_STEPS:
            proc = cli(
                *args, "install", str(wheels["good-2"]), "--no-wait", "--extras", "", env=hook
            )
        else:  # get onto a trial first, then cut the power while confirming / rolling back
            trial = cli(
                *args,
                "install",
                str(wheels["good-2"]),
                "--no-wait",
                "--extras",
                "",
                env={"CULTIVAI_BOOT_ID": f"boot-{boot}"},
            )
            assert trial.returncode == 0, trial.stderr
            action = "confirm" if step == "confirmed" else "rollback"
            proc = cli(*args, action, env=hook)
        assert proc.returncode == -signal.SIGKILL, (step, proc.stderr)
        # The next boot: the check runs before the agent would.
        boot += 1
        check = cli(*args, "check", "--boot", env={"CULTIVAI_BOOT_ID": f"boot-{boot}"})
        assert check.returncode == 0, (step, check.stderr)
        state = firmware.read_state(layout)
        assert state is not None and state.state != "trial", step
        version = runs(layout)
        assert layout.is_complete(layout.target(layout.current))
        results.append((step, version, state.state))
        if version.endswith("0.9.2"):  # confirmed before the cut: go back for the next round
            assert cli(*args, "rollback").returncode == 0
        assert runs(layout) == "cultivai-edge 0.9.1"
    # A cut before `confirm` committed always ends on the old release.
    assert {s: v for s, v, _ in results}["current-switched"] == "cultivai-edge 0.9.1"
    assert {s: v for s, v, _ in results}["rollback-current"] == "cultivai-edge 0.9.1"
    print("power cuts:", results)


# -- the whole update, with the real agent ---------------------------------------------


def test_update_confirms_a_healthy_agent_and_rolls_back_a_broken_one(
    tmp_path: Path, wheels: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    real = build_wheel(tmp_path_factory.mktemp("dist"))
    house = wheelhouse(real)
    root, data = tmp_path / "opt", tmp_path / "data"
    config = tmp_path / "edge.yaml"
    port = _free_port()
    config.write_text(
        yaml.safe_dump(
            {
                "device": {"id": "update-cam"},
                "camera": {"backend": "synthetic", "width": 160, "height": 120},
                "storage": {"dir": str(data), "min_free_mb": 0},
                "model": {"enabled": False},
                "schedule": {"interval_s": 2},
                "web": {"enabled": True, "host": "127.0.0.1", "port": port},
            }
        )
    )
    script, pidfile = service_script(tmp_path, root, config)
    args = [
        "firmware",
        "--root",
        str(root),
        "--config",
        str(config),
        "--service-command",
        f"{sys.executable} {script} {{action}}",
    ]
    layout = Layout(root)
    try:
        good = cli(
            *args,
            "install",
            str(real),
            "--wheelhouse",
            str(house),
            "--python",
            sys.executable,
            "--deadline-s",
            "180",
            "--settle-s",
            "3",
        )
        assert good.returncode == 0, good.stderr
        state = firmware.read_state(layout)
        assert state is not None and state.state == "confirmed"
        real_release = state.release
        ready = json.loads((data / "agent-ready.json").read_text())
        assert Path(ready["prefix"]).resolve() == (layout.release_dir(real_release) / "venv")

        bad = cli(
            *args,
            "install",
            str(wheels["crashes"]),
            "--extras",
            "",
            "--deadline-s",
            "15",
            "--settle-s",
            "3",
        )
        assert bad.returncode == 1
        assert "failed its health check" in bad.stderr and real_release in bad.stderr
        state = firmware.read_state(layout)
        assert state is not None and state.state == "rolled-back"
        assert layout.target(layout.current) == real_release
        # ... and the agent runs again from the release rolled back to.
        end = time.monotonic() + 120
        while time.monotonic() < end:
            ready = json.loads((data / "agent-ready.json").read_text())
            if ready["pid"] == int(pidfile.read_text()):
                break
            time.sleep(0.5)
        assert Path(ready["prefix"]).resolve() == (layout.release_dir(real_release) / "venv")

        # A trial that is never confirmed is rolled back at the next boot.
        trial = cli(*args, "install", str(wheels["good-2"]), "--extras", "", "--no-wait")
        assert trial.returncode == 0, trial.stderr
        assert layout.target(layout.current) != real_release
        boot = cli(*args, "check", "--boot", env={"CULTIVAI_BOOT_ID": "the-next-boot"})
        assert boot.returncode == 0 and "rolled back" in boot.stdout, boot.stderr
        assert layout.target(layout.current) == real_release
    finally:
        subprocess.run([sys.executable, str(script), "stop"], timeout=60, check=False)


def _fake_release(layout: Layout, name: str) -> None:
    """A release folder as install_release leaves it (entry point + mark), for state tests."""
    entry = layout.release_dir(name) / "venv/bin/cultivai-edge"
    entry.parent.mkdir(parents=True)
    entry.write_text("#!/bin/sh\necho cultivai-edge " + name + "\n")
    entry.chmod(0o755)
    (layout.release_dir(name) / firmware.INSTALLED_MARK).write_text(name + "\n")


def test_rollback_restores_the_database_when_the_trial_migrated_it_beyond_the_old_release(
    tmp_path: Path,
) -> None:
    from edge.dbupgrade import migrate
    from edge.store import DB_NAME, Store
    from tests.test_migrations import BREAKING, fill
    from tests.test_store import builder

    layout, data = Layout(tmp_path / "opt"), tmp_path / "data"
    _fake_release(layout, "0.1.0-aaaaaaaaaaaa")
    _fake_release(layout, "0.2.0-bbbbbbbbbbbb")
    firmware.point(layout.current, layout.release_dir("0.1.0-aaaaaaaaaaaa"))
    fill(data, 3)
    schema = firmware.database_schema(data)
    firmware.start_trial(layout, "0.2.0-bbbbbbbbbbbb", 600, schema)
    migrate(data / DB_NAME, BREAKING)  # the new release's first start
    with pytest.raises(StorageError, match="written by newer firmware"):
        Store(data)
    state = firmware.rollback(layout, "test", data)
    assert state.release == "0.1.0-aaaaaaaaaaaa"
    assert layout.target(layout.current) == "0.1.0-aaaaaaaaaaaa"
    assert layout.target(layout.previous) == "0.2.0-bbbbbbbbbbbb"
    store = Store(data)  # the old release opens it again
    assert [o.seq for o in store.recent()] == [3, 2, 1]
    assert store.add_observation(builder(), None).seq == 4
    store.close()


def test_a_compatible_migration_is_kept_on_rollback(tmp_path: Path) -> None:
    from edge.dbupgrade import migrate
    from edge.store import DB_NAME, Store
    from tests.test_migrations import ADDITIVE, fill, user_version

    layout, data = Layout(tmp_path / "opt"), tmp_path / "data"
    _fake_release(layout, "0.1.0-aaaaaaaaaaaa")
    _fake_release(layout, "0.2.0-bbbbbbbbbbbb")
    firmware.point(layout.current, layout.release_dir("0.1.0-aaaaaaaaaaaa"))
    fill(data, 2)
    firmware.start_trial(layout, "0.2.0-bbbbbbbbbbbb", 600, firmware.database_schema(data))
    migrate(data / DB_NAME, ADDITIVE)
    fill(data, 1)  # captured during the trial: kept, nothing restored
    firmware.rollback(layout, "test", data)
    assert user_version(data / DB_NAME) == 2
    store = Store(data)
    assert [o.seq for o in store.recent()] == [3, 2, 1]
    store.close()


def test_a_trial_past_its_deadline_is_rolled_back_by_the_check(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "opt")
    _fake_release(layout, "0.1.0-aaaaaaaaaaaa")
    _fake_release(layout, "0.2.0-bbbbbbbbbbbb")
    firmware.point(layout.current, layout.release_dir("0.1.0-aaaaaaaaaaaa"))
    firmware.start_trial(layout, "0.2.0-bbbbbbbbbbbb", 3600)
    assert firmware.check(layout).startswith("trial: 0.2.0-bbbbbbbbbbbb")
    # The same boot, now past the deadline.
    state = firmware.read_state(layout)
    assert state is not None
    state.deadline_monotonic = time.monotonic() - 1
    firmware.write_state(layout, state)
    assert "missed its deadline" in firmware.check(layout)
    assert layout.target(layout.current) == "0.1.0-aaaaaaaaaaaa"
    with pytest.raises(FirmwareError, match="no release is on trial"):
        firmware.confirm(layout)
