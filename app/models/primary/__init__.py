"""Models of the primary engine (`config` and `customer` schemas), on `PrimaryBase`."""
