"""Secrets the page keeps in the data folder (mode 0600), created at first start.

Config holds no secret: the session key is generated here, the password hash comes
from config or is generated here, and the metrics token is read from a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from pathlib import Path

from edge.errors import CultivaiError
from edge.web.password import generate_password, hash_password

log = logging.getLogger(__name__)
PASSWORD_FILE = "web-password.argon2"
SESSION_KEY_FILE = "web-session.key"


class WebSecretError(CultivaiError, OSError):
    """A secret file of the page cannot be read or written; the message names it."""


def load_password_hash(configured: str | None, data_dir: Path) -> str:
    """The configured hash, else the stored one, else a new password (logged once)."""
    if configured is not None:
        return configured
    path = data_dir / PASSWORD_FILE
    stored = _read_private(path)
    if stored:
        return stored
    password = generate_password()
    if not _create_private(path, hash_password(password)):
        return _read_private(path) or ""  # another process created it first
    log.warning(
        "status page password generated; it is shown only this once. Set "
        "web.password_hash to choose your own, or delete %s and restart for a new one: %s",
        path,
        password,
    )
    return _read_private(path) or ""


def load_session_key(data_dir: Path) -> bytes:
    """The key that signs session cookies, generated at first start."""
    path = data_dir / SESSION_KEY_FILE
    stored = _read_private(path)
    if not stored:
        _create_private(path, secrets.token_hex(32))
        stored = _read_private(path)
    if not stored:
        raise WebSecretError(f"{path}: session key file is empty")
    return bytes.fromhex(stored)


def read_token(path: Path) -> str:
    """A bearer token from its file (surrounding whitespace ignored)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise WebSecretError(f"web.metrics_token_file {path}: {exc.strerror or exc}") from exc
    if len(token) < 16:
        raise WebSecretError(f"web.metrics_token_file {path}: token shorter than 16 characters")
    return token


def _read_private(path: Path) -> str | None:
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise WebSecretError(f"{path}: {exc.strerror or exc}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secret file was readable by others; restricting it to 0600: %s", path)
        with contextlib.suppress(OSError):
            path.chmod(0o600)
    return text


def _create_private(path: Path, text: str) -> bool:
    """Write a new 0600 file durably; False when it already exists."""
    tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # fails when the file exists: never overwrite a secret
        _fsync_dir(path.parent)
    except FileExistsError:
        return False
    except OSError as exc:
        raise WebSecretError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return True


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
