"""Fixtures of the fleet tests: Ansible tools, and one provisioned sandbox fleet.

The fleet is built once: the wheel (like `make dist`) and a wheelhouse of its
dependencies, a private PostgreSQL, then `site.yml` twice on an inventory of local
hosts. After that the broker, both agents and the bridge run from what the playbooks
installed, as their systemd units would run them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fleet.sandbox import DEVICES, REPO, RUNS, Sandbox, build_wheel, build_wheelhouse


def missing(reason: str) -> None:
    """Skip, or fail in CI (CI=true), when a tool the fleet tests need is absent."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def find_ansible() -> Path | None:
    """The folder holding ansible-playbook and ansible-lint."""
    candidates = [os.environ.get("CULTIVAI_FLEET_VENV", ""), str(REPO / ".venv-fleet")]
    for venv in filter(None, candidates):
        if (Path(venv) / "bin" / "ansible-playbook").exists():
            return Path(venv) / "bin"
    found = shutil.which("ansible-playbook")
    return Path(found).parent if found else None


@pytest.fixture(scope="session")
def ansible_bin() -> Path:
    """Where ansible-playbook and ansible-lint are (`make fleet-venv` installs them)."""
    found = find_ansible()
    if found is None:
        missing(
            "ansible-playbook not found: run `make fleet-venv` (installs ansible/requirements.txt "
            "into .venv-fleet) or set CULTIVAI_FLEET_VENV"
        )
    assert found is not None
    return found


@pytest.fixture(scope="package")
def fleet(tmp_path_factory: pytest.TempPathFactory, ansible_bin: Path) -> Iterator[Sandbox]:
    """A fleet provisioned by site.yml (run twice) with its services started.

    Package-scoped: the processes stop when the last fleet test is done, not at the
    end of the whole test session.
    """
    from tests.bridge.pg import PgCluster, find_pg_bin

    if os.geteuid() != 0:
        missing("the fleet test runs as root, like Ansible on a device (files are owned by root)")
    for tool in ("openssl", "mosquitto"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            missing(f"{tool} is not installed (make system-deps installs it)")
    pg_bin = find_pg_bin()
    if pg_bin is None:
        missing("PostgreSQL server binaries not found (make system-deps installs them)")
    assert pg_bin is not None

    root = tmp_path_factory.mktemp("fleet")
    wheel = build_wheel(root / "dist")
    wheelhouse = build_wheelhouse(wheel, root / "wheelhouse")
    cluster = PgCluster(pg_bin).init().start()
    sandbox = Sandbox(root, ansible_bin, wheel, wheelhouse)
    sandbox.use_database(cluster.port)
    try:
        first = sandbox.playbook("site.yml")
        assert first.returncode == 0, first.explain()
        sandbox.site_runs = [first, sandbox.playbook("site.yml")]
        sandbox.start_broker()
        for name in DEVICES:
            sandbox.start_agent(name)
        sandbox.start_bridge()
        yield sandbox
    finally:
        sandbox.stop_all()
        cluster.destroy()
        # The hosts' virtualenvs take a gigabyte; logs and inventory stay for debugging.
        for folder in ("hosts", "dist", "wheelhouse"):
            shutil.rmtree(root / folder, ignore_errors=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How long each playbook run of the fleet tests took."""
    if not RUNS:
        return
    terminalreporter.section("fleet playbook runs")
    for run in RUNS:
        terminalreporter.write_line(
            f"{run.seconds:6.1f} s  rc={run.returncode}  changed={run.total('changed'):<3} "
            f"failed={run.total('failed')}  {run.label}"
        )
