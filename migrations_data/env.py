"""Alembic environment of the data tree; run it through `backoffice db ...`."""

from app.db.migrations import run_env

run_env()
