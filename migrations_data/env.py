"""Alembic environment of the data tree; run it through `backoffice db ...`."""

import app.models  # noqa: F401  (every model on its base: autogenerate compares them all)
from app.db.migrations import run_env

run_env()
