"""Shipping rates: one row per customer, carrier, service, route, weight band and
effective date."""

from app.datasets.base import Dataset, Field, Rule

DATASET = Dataset(
    name="rates",
    description="Carrier prices per route, weight band and effective date.",
    key=("carrier", "service", "origin_postal", "dest_postal", "weight_min_kg", "effective_date"),
    fields=(
        Field("carrier", "text", required=True),
        Field("service", "text", required=True),
        Field("origin_postal", "text"),
        Field("dest_postal", "text", required=True),
        Field("weight_min_kg", "numeric", nonnegative=True),
        Field("weight_max_kg", "numeric", nonnegative=True),
        Field("price", "numeric", required=True, nonnegative=True),
        Field("currency", "currency", required=True),
        Field("effective_date", "date", required=True),
        Field("expires_date", "date"),
    ),
    rules=(
        Rule("weight_min_kg <= weight_max_kg", "weight_max_kg", "must be at least weight_min_kg"),
        Rule("expires_date > effective_date", "expires_date", "must be after effective_date"),
    ),
)
