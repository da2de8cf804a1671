"""Alembic environment of the primary tree; run it through `backoffice db ...`."""

import app.models  # noqa: F401  (every model on its base: autogenerate compares them all)
from app.db.migrations import run_env

run_env()
