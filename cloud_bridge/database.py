"""Opening the database: engine settings per dialect and which errors mean "try again later"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, TimeoutError

from cloud_bridge.config import DatabaseConfig, read_secret
from cloud_bridge.errors import BridgeError


def database_url(config: DatabaseConfig) -> URL:
    """The configured URL with the password from `password_file` filled in."""
    url = make_url(config.url)
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
    return create_engine(
        url,
        pool_size=config.pool_size,
        max_overflow=config.pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        pool_timeout=config.connect_timeout_s,
        connect_args={
            "connect_timeout": config.connect_timeout_s,
            "application_name": "cultivai-bridge",
        },
    )


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


def is_transient(exc: BaseException) -> bool:
    """True when `exc` says the database is unreachable or busy, not that the data is bad."""
    if isinstance(exc, (OperationalError, InterfaceError, TimeoutError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


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
