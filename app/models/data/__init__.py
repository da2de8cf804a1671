"""Models of the data engine (`workspace` and `reference` schemas), on `DataBase`."""

from app.models.data import workspace  # noqa: F401
