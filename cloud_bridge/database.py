"""Opening the database: engine settings per dialect and which errors mean "try again later"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, TimeoutError

from cloud_bridge.config import DatabaseConfig, read_secret
from cloud_bridge.errors import BridgeError


def database_url(config: DatabaseConfig, read: bool = False) -> URL:
    """The configured URL (or read replica URL) with the password from `password_file`."""
    url = make_url(config.read_url if read and config.read_url else config.url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if config.password_file is not None:
        url = url.set(password=read_secret(config.password_file, "database password"))
    return url


def open_engine(config: DatabaseConfig) -> Engine:
    """An engine with a pre-pinged pool, connect timeout and (SQLite) WAL and busy timeout."""
    url = database_url(config)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, config)
    return _postgresql_engine(url, config, "cultivai-bridge")


def open_read_engine(config: DatabaseConfig) -> Engine | None:
    """An engine on the read replica (`read_url`), or None when the API reads the primary.

    Its sessions are read-only, so a query sent to it by mistake fails loudly on a
    primary too instead of writing where the replica cannot see it.
    """
    if config.read_url is None:
        return None
    return _postgresql_engine(
        database_url(config, read=True),
        config,
        "cultivai-bridge-read",
        options="-c default_transaction_read_only=on",
    )


def _postgresql_engine(
    url: URL, config: DatabaseConfig, application: str, options: str | None = None
) -> Engine:
    connect_args: dict[str, Any] = {
        "connect_timeout": config.connect_timeout_s,
        "application_name": application,
    }
    if options is not None:
        connect_args["options"] = options
    return create_engine(
        url,
        pool_size=config.pool_size,
        max_overflow=config.pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=config.connect_timeout_s,
        connect_args=connect_args,
    )


# On a standby: seconds since the last replayed transaction was committed on the primary,
# 0 when everything received is replayed (an idle primary sends nothing to replay, which
# must not look like lag), NULL (unknown) when it is behind but has replayed no
# transaction since it started. On a primary (e.g. a promoted replica) there is no lag.
REPLICA_LAG_SQL = text(
    "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0.0 "
    "WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0.0 "
    "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) "
    "END::float8, pg_is_in_recovery()"
)


def replica_lag_s(engine: Engine) -> tuple[float | None, bool]:
    """(replay lag in seconds or None if unknown, whether the server is a standby)."""
    with engine.connect() as connection:
        lag, standby = connection.execute(REPLICA_LAG_SQL).one()
    return (None if lag is None else max(0.0, float(lag))), bool(standby)


def _sqlite_engine(url: URL, config: DatabaseConfig) -> Engine:
    if url.database and url.database != ":memory:":
        folder = Path(url.database).parent
        if not folder.is_dir():
            raise BridgeError(f"database folder {folder} does not exist; create it first")
    engine = create_engine(
        url,
        pool_size=config.pool_size,
        pool_pre_ping=True,
        connect_args={"timeout": config.connect_timeout_s},
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: object) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    return engine


# SQLSTATEs that say "not now" about a healthy write: the server is a standby (a
# cluster replaying its archive after a restore, a replica not yet promoted) or is
# shutting down. Treated as data errors, they would send good rows to dead_letters.
TRANSIENT_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})


def is_transient(exc: BaseException) -> bool:
    """True when `exc` says the database is unreachable or busy, not that the data is bad."""
    if isinstance(exc, (OperationalError, InterfaceError, TimeoutError)):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return exc.connection_invalidated or sqlstate in TRANSIENT_SQLSTATES


Upsert = postgresql.Insert | sqlite.Insert
"""An INSERT with ON CONFLICT clauses, in PostgreSQL's or SQLite's flavour."""


def upsert(dialect_name: str, model: Any) -> Upsert:
    """A Core INSERT into `model`'s table that supports ON CONFLICT on this dialect.

    Core, not ORM: the ORM's bulk path costs several times more per row.
    """
    table = model.__table__
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
