"""Alembic migrations of the SQL store (see services.core.migrate)."""
