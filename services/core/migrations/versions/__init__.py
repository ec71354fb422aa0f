"""Alembic revisions, oldest first (files are named v<revision>_<slug>.py)."""
