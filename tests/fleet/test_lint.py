"""The playbooks and roles pass ansible-lint's production profile and a syntax check."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.fleet.sandbox import ANSIBLE_DIR

PLAYBOOKS = ["site.yml", "provision.yml", "update.yml", "model-rollout.yml", "rollback.yml"]


def _env(ansible_bin: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "NO_COLOR": "1",
        "PATH": f"{ansible_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }


@pytest.mark.timeout(600)
def test_ansible_lint_passes_the_production_profile(ansible_bin: Path) -> None:
    proc = subprocess.run(
        [str(ansible_bin / "ansible-lint"), "--profile", "production", "--offline"],
        cwd=ANSIBLE_DIR,
        env=_env(ansible_bin),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_playbook_passes_the_syntax_check(ansible_bin: Path, playbook: str) -> None:
    proc = subprocess.run(
        [str(ansible_bin / "ansible-playbook"), "--syntax-check", playbook],
        cwd=ANSIBLE_DIR,
        env=_env(ansible_bin),
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_example_inventory_dummy_secrets_are_refused(ansible_bin: Path) -> None:
    # The check runs on the controller only, so the example hosts need not exist.
    proc = subprocess.run(
        [str(ansible_bin / "ansible-playbook"), "secrets-check.yml"],
        cwd=ANSIBLE_DIR,
        env=_env(ansible_bin),
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "CHANGE-ME" in proc.stdout + proc.stderr
