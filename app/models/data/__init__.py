"""Models of the data engine (`workspace` and `reference` schemas), on `DataBase`."""

import app.datasets  # noqa: F401  (the reference tables, one per dataset)
from app.models.data import workspace  # noqa: F401
