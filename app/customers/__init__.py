"""Customers: the primary engine's `customer` schema, referred to by plain id on the data engine."""
