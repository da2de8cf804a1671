"""Every model, imported so that both bases' MetaData are complete.

Primary-engine models live in `app.models.primary`, data-engine models in `app.models.data`.
"""

from app.models import data, primary  # noqa: F401
