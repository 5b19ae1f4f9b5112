"""Checks of files and folders a config names: readable secrets, loadable TLS, writable folders.

Shared by the agent's and the bridge's check-config. Nothing here writes a file or
opens a socket.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge.tls_config import TlsConfig


@dataclass(frozen=True, slots=True)
class PathProblem:
    """One named path that is missing or unusable; `fatal` ones stop the agent's start."""

    where: str
    problem: str
    fatal: bool

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


def readable_file(path: Path) -> str | None:
    """Why `path` is not a readable, non-empty file, or None."""
    try:
        with path.open("rb") as f:
            head = f.read(1)
    except FileNotFoundError:
        return f"file {path} does not exist"
    except IsADirectoryError:
        return f"{path} is a folder, not a file"
    except OSError as exc:
        return f"file {path} cannot be read: {exc.strerror or exc}"
    return None if head else f"file {path} is empty"


def secret_file(where: str, path: Path, min_chars: int = 1) -> Iterator[PathProblem]:
    """A password or token file: readable and holding at least `min_chars` characters."""
    why = readable_file(path)
    if why is None:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            text = ""
        if len(text) < min_chars:
            why = (
                f"file {path} holds no usable secret"
                if min_chars == 1
                else f"file {path} holds fewer than {min_chars} characters"
            )
    if why is not None:
        yield PathProblem(where, why, fatal=True)


def tls_files(where: str, tls: TlsConfig) -> Iterator[PathProblem]:
    """The CA (and client certificate and key) exist and load as PEM."""
    named = {"ca_file": tls.ca_file, "cert_file": tls.cert_file, "key_file": tls.key_file}
    missing = False
    for name, path in named.items():
        why = readable_file(path) if path is not None else None
        if why is not None:
            missing = True
            yield PathProblem(f"{where}.{name}", why, fatal=True)
    if missing:
        return
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(tls.ca_file))
    except (ssl.SSLError, ValueError, OSError) as exc:
        yield PathProblem(
            f"{where}.ca_file", f"{tls.ca_file} is not a PEM CA certificate ({exc})", fatal=True
        )
    if tls.cert_file is not None and tls.key_file is not None:
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (ssl.SSLError, ValueError, OSError) as exc:
            yield PathProblem(
                f"{where}.cert_file",
                f"{tls.cert_file} and {tls.key_file} are not a matching PEM certificate "
                f"and key ({exc})",
                fatal=True,
            )


def writable_folder(where: str, folder: Path) -> Iterator[PathProblem]:
    """A folder that exists and is writable, or that this user can create."""
    if folder.exists():
        if not folder.is_dir():
            yield PathProblem(where, f"{folder} is a file, not a folder", fatal=True)
        elif not os.access(folder, os.W_OK | os.X_OK):
            yield PathProblem(where, f"folder {folder} is not writable by this user", fatal=True)
        return
    ancestor = folder.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        yield PathProblem(where, f"{folder} cannot be created: {ancestor} is a file", fatal=True)
    elif not os.access(ancestor, os.W_OK | os.X_OK):
        yield PathProblem(
            where, f"{folder} does not exist and {ancestor} is not writable", fatal=True
        )
