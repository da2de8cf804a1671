"""Every model, imported so that both bases' MetaData are complete.

Primary-engine models live in `app.models.primary`, data-engine models in `app.models.data`.
Importing any model imports this package first, so once one model is loaded all are, and the
bases' metadata is handed to `app.db.base` for the code that needs every table.
"""

from sqlalchemy import MetaData

from app.db.base import BASES, models_loaded
from app.db.schemas import EngineRole
from app.models import data, primary  # noqa: F401

METADATA: dict[EngineRole, MetaData] = {role: base.metadata for role, base in BASES.items()}
models_loaded(METADATA)
