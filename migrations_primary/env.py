"""Alembic environment of the primary tree; run it through `backoffice db ...`."""

from app.db.migrations import run_env

run_env()
