"""The device database's schema history: numbered migrations, applied in order.

A migration is history: its SQL is written out here and never derived from
edge/tables.py, because the models keep changing after a migration ships. A test
checks that applying every migration to an empty database gives exactly the schema
the models describe.

Rules for a new migration (see docs/appliance.md):
- append it with the next number; never edit or renumber one that has shipped;
- prefer additive changes (a new table, a new nullable column, a new index): older
  firmware ignores them, so a rollback keeps working on the same database;
- a change older firmware cannot live with (a dropped or renamed column, a new
  NOT NULL column without a default) sets `breaks_older=True`: an older firmware
  then refuses the database, and a firmware rollback restores the snapshot taken
  before the migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from sqlite3 import Cursor

from edge.migrations import m0001_baseline


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered step of the schema: `apply` runs inside the migration's transaction."""

    version: int
    name: str
    apply: Callable[[Cursor], None]
    breaks_older: bool = False


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "baseline: the tables as of firmware 0.1", m0001_baseline.apply),
)

__all__ = ["MIGRATIONS", "Migration"]
