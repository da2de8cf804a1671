"""Models of the primary engine (`config` and `customer` schemas), on `PrimaryBase`."""

from app.models.primary import config, customer  # noqa: F401
