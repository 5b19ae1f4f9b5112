"""A private PostgreSQL cluster for tests and benchmarks: initdb, pg_ctl, a free port.

PostgreSQL refuses to run as root; when the tests run as root (CI containers) the
cluster is created and run as the `postgres` user through `runuser`, in a folder
that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from tests.mqtt_broker import free_port


def find_pg_bin() -> Path | None:
    """The newest PostgreSQL server's bin folder (Debian layout), or the one on PATH."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


class PgCluster:
    """One postgres server on 127.0.0.1 with trust authentication for user `postgres`."""

    def __init__(self, bin_dir: Path, durable: bool = False) -> None:
        self.bin_dir = bin_dir
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="cultivai-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.user = "postgres"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            try:
                pw = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "PostgreSQL will not run as root and there is no `postgres` user to run "
                    "it as (the Debian postgresql package creates one)"
                ) from None
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self.root.chmod(0o700)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True, timeout=60)

    def init(self) -> PgCluster:
        """Create the cluster (initdb)."""
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            self.user,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale",
            "C",
        )
        return self

    def start(self, timeout: float = 30.0) -> PgCluster:
        """Start the server and wait until it accepts connections."""
        options = [
            f"-p {self.port}",
            f"-k {self.root}",
            f"-c listen_addresses={self.host}",
            "-c max_connections=200",
        ]
        if not self.durable:
            options += ["-c fsync=off", "-c full_page_writes=off", "-c synchronous_commit=off"]
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            " ".join(options),
            "start",
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections:\n{self.log_text()}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: roll back open transactions, disconnect clients)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def destroy(self) -> None:
        """Stop the server and delete its files."""
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str) -> str:
        """A libpq connection string for one database."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def url(self, dbname: str) -> str:
        """A SQLAlchemy URL (psycopg driver) for one database."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def create_database(self, name: str, template: str | None = None) -> None:
        """CREATE DATABASE, optionally as a copy of `template`."""
        suffix = f" TEMPLATE {template}" if template else ""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{suffix}'.encode())

    def drop_database(self, name: str) -> None:
        """DROP DATABASE, disconnecting whoever is still connected."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())

    def tool(self, name: str) -> str:
        """Path of a client tool of this server's version (pg_dump, pg_restore, psql)."""
        return str(self.bin_dir / name)

    def log_text(self) -> str:
        """The server log so far."""
        try:
            return self.log.read_text()
        except OSError:
            return ""
