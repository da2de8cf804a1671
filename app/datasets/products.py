"""Products: one row per customer and SKU."""

from app.datasets.base import Dataset, Field

DATASET = Dataset(
    name="products",
    description="The customer's product catalogue, one row per SKU.",
    key=("sku",),
    fields=(
        Field("sku", "text", required=True),
        Field("name", "text", required=True),
        Field("category", "text"),
        Field("weight_kg", "numeric", nonnegative=True),
        Field("length_cm", "numeric", nonnegative=True),
        Field("width_cm", "numeric", nonnegative=True),
        Field("height_cm", "numeric", nonnegative=True),
        Field("unit_price", "numeric", required=True, nonnegative=True),
        Field("currency", "currency", required=True),
        Field("barcode", "text"),
        Field("active", "boolean"),
        Field("updated_at", "timestamp"),
    ),
)
