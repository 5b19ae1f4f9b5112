"""Point-in-time recovery of the fleet database with pgBackRest.

`python -m cloud_bridge.ops.backup COMMAND` (what `make db-backup` / `make db-restore`
run) wraps the pgBackRest commands an admin needs, on the pgBackRest configuration the
Ansible role `postgres` renders:

    backup [--type full|diff|incr]   a base backup (creates the stanza the first time)
    restore-point NAME --dsn URL     a named point to come back to (before a migration)
    restore [--name N | --time T]    rebuild PGDATA: the end of the archive, or a point
    info                             the backups and the WAL archive

The PostgreSQL server archives its WAL continuously (`archive_command`, rendered by the
role), so a restore replays everything up to the last archived segment; what was
committed after it is the recovery point objective (docs/bridge.md).
"""

from __future__ import annotations

import argparse
import configparser
import getpass
import os
import pwd
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cloud_bridge.errors import BridgeError

DEFAULT_CONFIG = Path("/etc/pgbackrest/pgbackrest.conf")
DEFAULT_STANZA = "cultivai"
BACKUP_TYPES = ("full", "diff", "incr")
# pg_create_restore_point accepts any text; a name that also reads well on a command
# line and in the server log is easier to get right at 3 a.m.
RESTORE_POINT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}")


class BackupError(BridgeError, RuntimeError):
    """A backup, restore point or restore did not complete; the message says why."""


@dataclass(frozen=True, slots=True)
class Repository:
    """One pgBackRest configuration file and stanza, and the OS user that runs it."""

    config: Path = DEFAULT_CONFIG
    stanza: str = DEFAULT_STANZA
    user: str | None = "postgres"

    def data_dir(self) -> Path:
        """PGDATA of the stanza (`pg1-path`), read from the configuration file."""
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            with self.config.open() as handle:
                parser.read_file(handle)
        except OSError as exc:
            raise BackupError(f"cannot read pgBackRest config {self.config}: {exc}") from None
        except configparser.Error as exc:
            raise BackupError(f"pgBackRest config {self.config} is not valid: {exc}") from None
        if not parser.has_option(self.stanza, "pg1-path"):
            raise BackupError(f"{self.config} has no pg1-path in section [{self.stanza}]")
        return Path(parser.get(self.stanza, "pg1-path"))

    def command(self, *args: str) -> list[str]:
        """A pgbackrest command line for this stanza, run as `user` when that is not us."""
        line = ["pgbackrest", f"--config={self.config}", f"--stanza={self.stanza}", *args]
        if self.user is None or self.user == getpass.getuser():
            return line
        if os.geteuid() == 0:
            return ["runuser", "-u", self.user, "--", *line]
        return ["sudo", "-n", "-u", self.user, "--", *line]

    def run(self, *args: str, timeout: float | None = None) -> str:
        """Run one pgbackrest command; its output, or a BackupError with its last lines."""
        line = self.command(*args)
        try:
            done = subprocess.run(line, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise BackupError(
                f"{line[0]} is not installed (Debian: apt-get install pgbackrest)"
            ) from None
        except subprocess.TimeoutExpired:
            raise BackupError(f"pgbackrest {args[-1]} did not finish in {timeout} s") from None
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-8:])
            raise BackupError(f"pgbackrest {args[-1]} failed (exit {done.returncode}):\n{tail}")
        return done.stdout


def backup(repo: Repository, kind: str = "full") -> str:
    """Take a base backup; the stanza is created first if it is not there yet."""
    if kind not in BACKUP_TYPES:
        raise BackupError(f"backup type {kind!r}: expected one of {', '.join(BACKUP_TYPES)}")
    repo.run("stanza-create")  # a no-op on a stanza that exists and matches the server
    return repo.run(f"--type={kind}", "backup")


def restore_point(repo: Repository, dsn: str, name: str) -> str:
    """Mark a named point in the WAL and wait until the archive holds it; returns its LSN."""
    if not RESTORE_POINT.fullmatch(name):
        raise BackupError(
            f"restore point name {name!r}: use 1-63 letters, digits, '_', '.', ':' or '-'"
        )
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT pg_create_restore_point(%s)::text", (name,)).fetchone()
    except psycopg.Error as exc:
        raise BackupError(f"cannot create restore point {name!r}: {exc}") from None
    assert row is not None
    # `check` switches to a new WAL segment and waits until it is archived, so the
    # point is restorable even if the server dies right after this returns.
    repo.run("check", timeout=300)
    return str(row[0])


def restore(
    repo: Repository,
    name: str | None = None,
    time: str | None = None,
    backup_set: str | None = None,
) -> str:
    """Rebuild PGDATA from the repository: to the end of the archive, a named point or a time.

    The server must be stopped. Files that match the backup are kept (`--delta`), so
    restoring over a damaged PGDATA is quicker than into an empty one; a missing PGDATA
    is created. A restore to a point promotes the server when it gets there.
    """
    if name is not None and time is not None:
        raise BackupError("restore to a restore point name or a time, not both")
    args = ["--delta"]
    if name is not None:
        if not RESTORE_POINT.fullmatch(name):
            raise BackupError(f"restore point name {name!r} is not a valid name")
        args += ["--type=name", f"--target={name}", "--target-action=promote"]
    elif time is not None:
        try:
            datetime.fromisoformat(time)
        except ValueError:
            raise BackupError(
                f"restore time {time!r}: expected ISO 8601 with a zone, e.g. 2026-03-02 03:00:00+00"
            ) from None
        args += ["--type=time", f"--target={time}", "--target-action=promote"]
    if backup_set is not None:
        args.append(f"--set={backup_set}")
    data = repo.data_dir()
    if (data / "postmaster.pid").exists():
        raise BackupError(
            f"{data}/postmaster.pid exists: stop PostgreSQL before restoring "
            "(or remove the file if the server is known to be dead)"
        )
    if not data.exists():
        data.mkdir(mode=0o700, parents=True)
        if repo.user is not None and os.geteuid() == 0:
            account = pwd.getpwnam(repo.user)
            os.chown(data, account.pw_uid, account.pw_gid)
    return repo.run(*args, "restore")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cloud_bridge.ops.backup",
        description="Backups and point-in-time recovery of the fleet database (pgBackRest).",
    )
    p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="pgBackRest config file")
    p.add_argument("--stanza", default=DEFAULT_STANZA, help="pgBackRest stanza")
    p.add_argument(
        "--user", default="postgres", help="OS user that runs pgbackrest (owner of PGDATA)"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    b = sub.add_parser("backup", help="take a base backup")
    b.add_argument("--type", choices=BACKUP_TYPES, default="full")
    rp = sub.add_parser("restore-point", help="create a named restore point")
    rp.add_argument("name")
    rp.add_argument("--dsn", required=True, help="libpq URL of a superuser on the server")
    r = sub.add_parser("restore", help="rebuild PGDATA (server stopped)")
    target = r.add_mutually_exclusive_group()
    target.add_argument("--name", help="stop at this restore point")
    target.add_argument("--time", help="stop at this time (ISO 8601 with a zone)")
    r.add_argument("--set", dest="backup_set", help="base backup to start from (default newest)")
    sub.add_parser("info", help="list backups and the WAL archive")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit 0 on success, 1 with the reason on stderr."""
    args = _parser().parse_args(argv)
    repo = Repository(args.config, args.stanza, args.user or None)
    try:
        if args.command == "backup":
            out = backup(repo, args.type)
        elif args.command == "restore-point":
            out = f"restore point {args.name} at {restore_point(repo, args.dsn, args.name)}\n"
        elif args.command == "restore":
            out = restore(repo, args.name, args.time, args.backup_set)
            out += "restored; start PostgreSQL to replay the archive\n"
        else:
            out = repo.run("info")
    except BackupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
