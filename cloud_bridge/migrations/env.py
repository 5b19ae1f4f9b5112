"""Alembic environment: run the migrations on the connection `cloud_bridge.schema` hands in."""

from __future__ import annotations

from alembic import context

from cloud_bridge.partitions import include_name
from cloud_bridge.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `cultivai-bridge migrate`, which opens the database")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_name=include_name,
)
with context.begin_transaction():
    context.run_migrations()
