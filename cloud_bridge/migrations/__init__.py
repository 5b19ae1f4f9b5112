"""Alembic migrations of the fleet database, shipped inside the package."""
