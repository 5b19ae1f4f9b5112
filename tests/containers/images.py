"""Images the container tests build locally: a Debian base (debootstrap) and the bridge.

No image registry is reachable from the test machines, so the base image every test
image starts FROM is made here: debootstrap from the Debian mirror named in the
machine's apt sources, packed as a tarball and `docker import`ed. Both the tarball and
the image tag are keyed by a hash of the recipe, under the cache folder, so a clean
checkout on the same machine reuses them. Run `python -m tests.containers.images` to
build (or find) the base tarball ahead of a test run.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[2]

SUITE = "bookworm"
# What every local image needs: Python with venv for the bridge (Debian's python3 is
# 3.11 on bookworm, like the slim Python image users build on), tini as PID 1.
BASE_PACKAGES = ("python3", "python3-venv", "tini")
# The one-server stack's images add Debian packages to the same base.
RECIPE_VERSION = 1


class DockerLike(Protocol):
    """What the image helpers need of a docker daemon (tests.containers.dockerd)."""

    def docker(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]: ...

    def has_image(self, tag: str) -> bool: ...


def cache_root() -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/cultivai`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cultivai"


def debian_mirror(sources_dir: Path = Path("/etc/apt")) -> str:
    """The first Debian mirror the machine's apt sources name (deb822 or one-line format)."""
    candidates: list[Path] = []
    if (sources_dir / "sources.list").is_file():
        candidates.append(sources_dir / "sources.list")
    candidates += sorted((sources_dir / "sources.list.d").glob("*.sources"))
    candidates += sorted((sources_dir / "sources.list.d").glob("*.list"))
    for path in candidates:
        for line in path.read_text(errors="replace").splitlines():
            line = line.strip()
            m = re.match(r"URIs:\s*(\S+)", line) or re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)", line)
            if m and "security" not in m.group(1) and "/debian" in m.group(1):
                return m.group(1).rstrip("/")
    return "http://deb.debian.org/debian"


@dataclass(frozen=True)
class BaseRecipe:
    """What goes into the Debian base image; its hash names the tarball and the tag."""

    suite: str = SUITE
    packages: tuple[str, ...] = BASE_PACKAGES
    mirror: str = "http://deb.debian.org/debian"

    def key(self) -> str:
        """A short hash of the recipe (the mirror is left out: any mirror gives the same)."""
        text = json.dumps(
            {"v": RECIPE_VERSION, "suite": self.suite, "packages": sorted(self.packages)}
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def tarball(self) -> Path:
        """Where the packed root filesystem is cached."""
        return cache_root() / "containers" / f"debian-{self.suite}-{self.key()}.tar"

    @property
    def tag(self) -> str:
        """The docker image tag of the imported base."""
        return f"cultivai-test/debian-base:{self.suite}-{self.key()}"


def build_base_tarball(recipe: BaseRecipe) -> Path:
    """debootstrap --variant=minbase into a temp folder and pack it; cached by recipe hash."""
    if recipe.tarball.is_file():
        return recipe.tarball
    if shutil.which("debootstrap") is None and not Path("/usr/sbin/debootstrap").exists():
        raise RuntimeError("debootstrap not found (make system-deps installs it)")
    recipe.tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=recipe.tarball.parent, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(recipe.packages)}",
                recipe.suite,
                str(root),
                recipe.mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # Keep the image small: the package lists and the .deb cache are not needed.
        for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for item in (root / sub).glob("*"):
                if item.is_file():
                    item.unlink()
        partial = recipe.tarball.with_suffix(".partial")
        with partial.open("wb") as out:
            subprocess.run(
                ["tar", "--numeric-owner", "-C", str(root), "-c", "."], check=True, stdout=out
            )
        partial.replace(recipe.tarball)
    return recipe.tarball


def import_base(docker: DockerLike, recipe: BaseRecipe) -> str:
    """The base image in the daemon: imported from the cached tarball unless already there."""
    if not docker.has_image(recipe.tag):
        tarball = build_base_tarball(recipe)
        docker.docker("import", "--change", 'CMD ["/bin/bash"]', str(tarball), recipe.tag)
    return recipe.tag


# What the bridge image is built from: the build context the .dockerignore lets through.
CONTEXT_FILES = ("pyproject.toml", "README.md", ".dockerignore", "cloud_bridge/Dockerfile")
CONTEXT_TREES = ("edge", "cloud_bridge")
MODEL_FILES = ("model.tflite", "labels.txt", "manifest.json")


def context_key(base_tag: str) -> str:
    """A hash of everything the bridge image is made of, the base image included."""
    h = hashlib.sha256(base_tag.encode())
    paths = [REPO / f for f in CONTEXT_FILES]
    paths += [REPO / "models" / "plant_health" / f for f in MODEL_FILES]
    for tree in CONTEXT_TREES:
        paths += sorted(
            p for p in (REPO / tree).rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    for path in paths:
        h.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:12]


def bridge_requirements() -> list[str]:
    """What pip inside the image build needs: the bridge's dependencies and the build backend."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = list(project["project"]["dependencies"])
    reqs += project["project"]["optional-dependencies"]["bridge"]
    reqs += project["build-system"]["requires"]
    return reqs


def wheelhouse() -> Path:
    """A folder of wheels for the image build, downloaded once per requirement set.

    The image build then runs offline against a local web server on 127.0.0.1 that
    serves this folder (pip's --find-links), like a private index would.
    """
    reqs = bridge_requirements()
    key = hashlib.sha256("\n".join(sorted(reqs)).encode()).hexdigest()[:12]
    folder = (
        cache_root() / "containers" / f"wheels-py{sys.version_info[0]}{sys.version_info[1]}-{key}"
    )
    if (folder / ".complete").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "--dest",
            str(folder),
            *reqs,
        ],
        check=True,
    )
    (folder / ".complete").touch()
    return folder


@contextlib.contextmanager
def serve_folder(folder: Path) -> Iterator[str]:
    """Serve a folder over HTTP on 127.0.0.1 (a free port) while the block runs."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def build_bridge_image(docker: DockerLike, base_tag: str) -> str:
    """The bridge image built from cloud_bridge/Dockerfile on `base_tag`; cached by content."""
    tag = f"cultivai-test/bridge:{context_key(base_tag)}"
    if docker.has_image(tag):
        return tag
    with serve_folder(wheelhouse()) as url:
        docker.docker(
            "build",
            "--network=host",
            "--file",
            str(REPO / "cloud_bridge" / "Dockerfile"),
            "--build-arg",
            f"BASE_IMAGE={base_tag}",
            "--build-arg",
            f"PIP_FIND_LINKS={url}",
            "--build-arg",
            "PIP_NO_INDEX=1",
            "--build-arg",
            "REVISION=test",
            "--tag",
            tag,
            str(REPO),
            timeout=1800,
        )
    # Earlier builds would pile up in the daemon's data root: keep the newest only.
    listed = docker.docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout
    old = [t for t in listed.split() if t.startswith("cultivai-test/bridge:") and t != tag]
    if old:
        docker.docker("image", "rm", *old, check=False)
    docker.docker("image", "prune", "--force", check=False)
    return tag


def build_stack_image(docker: DockerLike, base_tag: str, name: str) -> str:
    """One of the stack's Debian-package images (deploy/compose/NAME), on the local base."""
    folder = REPO / "deploy" / "compose" / name
    h = hashlib.sha256(base_tag.encode())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    tag = f"cultivai-test/{name}:{h.hexdigest()[:12]}"
    if not docker.has_image(tag):
        # apt inside the build reaches the Debian mirror over the host network.
        docker.docker(
            "build",
            "--network=host",
            "--build-arg",
            f"BASE_IMAGE={base_tag}",
            "--tag",
            tag,
            str(folder),
            timeout=1800,
        )
    return tag


def default_recipe() -> BaseRecipe:
    """The base recipe with the machine's mirror."""
    return BaseRecipe(mirror=debian_mirror())


if __name__ == "__main__":
    print(build_base_tarball(default_recipe()))
    sys.exit(0)
