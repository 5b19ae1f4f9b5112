"""Fixtures of the container tests: a private dockerd, the local base and bridge images.

Images are built once and cached (by recipe and content hash) in the private daemon's
data root under the cache folder; a run on a warm cache only starts the daemon.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bridge.conftest import empty_pg_url, pg_cluster  # noqa: F401 (fixtures)
from tests.containers import images
from tests.containers.dockerd import PrivateDockerd, find_dockerd

REPO = images.REPO
TOOLS_BIN = REPO / ".venv-tools" / "bin"


def missing(reason: str) -> None:
    """Skip, or fail when CI=true: CI must have every tool these tests need."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def tool(name: str, where: Path = TOOLS_BIN) -> str:
    """A command from the tools venv (or PATH), or skip naming the make target."""
    candidate = where / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        missing(f"{name} not found (make tools-venv installs it into .venv-tools)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def dockerd() -> Iterator[PrivateDockerd]:
    """A private Docker daemon for the session (own data root, socket, no networking)."""
    if find_dockerd() is None or shutil.which("docker") is None:
        missing("dockerd/docker not found (make system-deps installs docker.io)")
    if os.geteuid() != 0:
        missing("a private dockerd needs root")
    daemon = PrivateDockerd().start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def base_image(dockerd: PrivateDockerd) -> str:
    """The Debian base (debootstrap minbase + python3, venv, tini), imported once."""
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        missing("debootstrap not found (make system-deps installs it)")
    return images.import_base(dockerd, images.default_recipe())


@pytest.fixture(scope="session")
def bridge_image(dockerd: PrivateDockerd, base_image: str) -> str:
    """cloud_bridge/Dockerfile built on the local base, offline against a local wheel folder."""
    return images.build_bridge_image(dockerd, base_image)
