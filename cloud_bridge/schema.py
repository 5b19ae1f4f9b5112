"""Applying the shipped Alembic migrations, and refusing to run on an old schema."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from cloud_bridge.errors import DatabaseUnavailableError, SchemaNotReadyError

log = logging.getLogger("cloud_bridge.schema")
SCRIPT_LOCATION = "cloud_bridge:migrations"
_MIGRATION_LOCK = 0x43554C54  # any constant shared by every bridge: serialises `migrate`


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged migrations, bound to `connection` if given."""
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest migration this bridge ships."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the package ships no migrations"
    return head


@contextmanager
def _reachable(engine: Engine) -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        first = str(exc.orig or exc).strip().splitlines()[0]
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseUnavailableError(f"cannot reach the database {where}: {first}") from None


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for an empty database."""
    with _reachable(engine), engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine) -> tuple[str | None, str]:
    """Upgrade the database to the newest migration; returns (before, after)."""
    with _reachable(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        before = MigrationContext.configure(connection).get_current_revision()
        command.upgrade(alembic_config(connection), "head")
        after = MigrationContext.configure(connection).get_current_revision()
    assert after is not None
    log.info("database migrated", extra={"from_revision": before, "to_revision": after})
    return before, after


def require_current(engine: Engine) -> None:
    """Raise SchemaNotReadyError unless the database is at this bridge's newest migration."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaNotReadyError(
            f"database schema is at {current or 'nothing (empty database)'}, this bridge "
            f"needs {head}: run `cultivai-bridge migrate` first"
        )
