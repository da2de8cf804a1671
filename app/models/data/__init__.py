"""Models of the data engine (`workspace` and `reference` schemas), on `DataBase`."""
