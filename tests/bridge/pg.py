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
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import jinja2
import psycopg
import yaml

from cloud_bridge.ops.backup import Repository
from tests.mqtt_broker import free_port

ROLE = Path(__file__).resolve().parents[2] / "ansible" / "roles" / "postgres"


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


def _children(pid: int) -> list[int]:
    """Pids whose parent is `pid`."""
    found = []
    for status in glob.glob("/proc/[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in Path(status).read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid):
            found.append(int(Path(status).parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


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
        return self.run_as_owner([str(self.bin_dir / args[0]), *args[1:]], check=check)

    def run_as_owner(
        self, command: list[str], check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run a command as the user that owns the cluster (pgbackrest, pg_basebackup)."""
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done

    def chown_to_owner(self, path: Path) -> None:
        """Give a file or folder this cluster's owner (it runs as `postgres` under root)."""
        if self.as_root:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

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

    def init_standby(self, primary: PgCluster) -> PgCluster:
        """Create this cluster as a streaming standby of `primary` (pg_basebackup -R)."""
        self._run(
            "pg_basebackup",
            "-h",
            primary.host,
            "-p",
            str(primary.port),
            "-U",
            primary.user,
            "-D",
            str(self.data),
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
        )
        return self

    def configure(self, settings: dict[str, str]) -> None:
        """Append server settings to postgresql.conf (kept by base backups and restores)."""
        lines = "".join(f"{name} = '{value}'\n" for name, value in settings.items())
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(lines)

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid, from postmaster.pid (None if not running)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def kill(self, timeout: float = 10.0) -> None:
        """kill -9 the postmaster: no checkpoint, no shutdown, like a crashed server."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        # Backends notice that their postmaster died and exit; wait for them too, so
        # the next server on this port and folder starts from a clean slate.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(p) for p in [pid, *children]):
            time.sleep(0.05)

    def promote(self) -> None:
        """Promote a standby to a primary (pg_ctl promote, waits until done)."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "60", "promote")

    def wait_writable(self, timeout: float = 120.0) -> None:
        """Wait until recovery is over and the server takes writes (a restore or promote)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    if row is not None and not row[0]:
                        return
            except psycopg.OperationalError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"postgres still in recovery after {timeout} s:\n{self.log_text()}")

    def wipe(self) -> None:
        """Delete the data folder (the server must not be running)."""
        shutil.rmtree(self.data, ignore_errors=True)

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


def role_template(name: str, **overrides: object) -> str:
    """Render one of the postgres role's templates with its defaults and `overrides`."""
    variables = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()) | overrides
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    return env.from_string((ROLE / "templates" / name).read_text()).render(**variables)


class PgBackRest:
    """WAL archiving and a pgBackRest repository for one cluster, as the Ansible role sets up.

    Call before the cluster's first start: the role's archiving settings go into its
    postgresql.conf, and the role's pgbackrest.conf (repository, logs and locks in the
    cluster's folder) points at its data folder, port and socket.
    """

    def __init__(self, cluster: PgCluster, archive_timeout_s: int = 60) -> None:
        self.cluster = cluster
        self.root = cluster.root / "pgbackrest"
        for sub in ("", "repo", "log", "lock"):
            (self.root / sub).mkdir(exist_ok=True)
            cluster.chown_to_owner(self.root / sub)
        self.config = self.root / "pgbackrest.conf"
        self.config.write_text(
            role_template(
                "pgbackrest.conf.j2",
                postgres_pgbackrest_repo_path=str(self.root / "repo"),
                postgres_pgbackrest_log_path=str(self.root / "log"),
                postgres_pgbackrest_lock_path=str(self.root / "lock"),
                postgres_data_dir=str(cluster.data),
                postgres_port=cluster.port,
                postgres_socket_dir=str(cluster.root),
            )
        )
        archiving = role_template(
            "archiving.conf.j2",
            postgres_pgbackrest_config=str(self.config),
            postgres_archive_timeout_s=archive_timeout_s,
        )
        with (cluster.data / "postgresql.conf").open("a") as conf:
            conf.write(archiving)
        self.repository = Repository(
            self.config, "cultivai", "postgres" if cluster.as_root else None
        )
