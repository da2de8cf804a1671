"""Transforms, value by value: each rule of both datasets, typed storage, and which headers
feed which columns. Jobs run for real on committed databases."""

from decimal import Decimal

import pytest

from app.errors import Refused
from app.transforms import service as transforms
from tests.bulk import (
    RATES_HEADER,
    counts,
    reference_rows,
    rejections,
    run_import,
    run_transform,
)

NUMBER = "not a number"
PRODUCT_CASES = [
    # (column, value, None when accepted or the reason's start when refused)
    ("unit_price", "12.50", None),
    ("unit_price", "-0", None),
    ("unit_price", ".5", None),
    ("unit_price", "+3", None),
    ("unit_price", "1,50", NUMBER),
    ("unit_price", "1,000.00", NUMBER),
    ("unit_price", "1 000", NUMBER),
    ("unit_price", "1e3", NUMBER),
    ("unit_price", "NaN", NUMBER),
    ("unit_price", "-1", "must be at least 0"),
    ("unit_price", "", "required"),
    ("weight_kg", "0.001", None),
    ("weight_kg", "-0.5", "must be at least 0"),
    ("weight_kg", "", None),
    ("height_cm", "abc", NUMBER),
    ("currency", "eur", None),
    ("currency", "USD", None),
    ("currency", "EURO", "not an ISO"),
    ("currency", "XXY", "not an ISO"),
    ("currency", "", "required"),
    ("active", "true", None),
    ("active", "FALSE", None),
    ("active", "yes", None),
    ("active", "No", None),
    ("active", "1", None),
    ("active", "0", None),
    ("active", "t", None),
    ("active", "F", None),
    ("active", "maybe", "not a boolean"),
    ("active", "2", "not a boolean"),
    ("updated_at", "2024-05-01", None),
    ("updated_at", "2024-05-01T10:30:00Z", None),
    ("updated_at", "2024-05-01 10:30+02:00", None),
    ("updated_at", "2024-02-30", "not a timest"),
    ("updated_at", "01/05/2024", "not a timest"),
    ("updated_at", "2024-5-1", "not a timest"),
    ("updated_at", "2024-05-01 10:30 PST", "not a timest"),  # offsets only, no zone names
    ("updated_at", "May 1 2024", "not a timest"),
    ("updated_at", "2024-05-01 allballs", "not a timest"),
    ("updated_at", "20240501", "not a timest"),
    ("name", "", "required"),
    ("name", "  padded  ", None),
]


@pytest.mark.parametrize(("column", "value", "refused"), PRODUCT_CASES)
def test_each_product_rule(bo, customer, column, value, refused):
    row = {"sku": "S1", "name": "Name", "unit_price": "1", "currency": "EUR", column: value}
    header = list(row)
    content = ",".join(header) + "\n" + ",".join(f'"{row[h]}"' for h in header) + "\n"
    transform, outcome = run_transform(bo, run_import(bo, customer, content))
    assert outcome.status == "succeeded"
    if refused is None:
        assert counts(transform)["inserted"] == 1 and rejections(bo, transform.import_id) == []
    else:
        assert counts(transform)["rejected"] == 1 and counts(transform)["inserted"] == 0
        [(line, col, val, reason)] = rejections(bo, transform.import_id)
        assert (line, col) == (2, column) and reason.startswith(refused)
        assert val == (value.strip() or None)


def test_product_values_are_stored_typed(bo, customer):
    content = (
        "sku,name,unit_price,currency,active,updated_at,weight_kg\n"
        "S1, Name ,12.50,eur,Yes,2024-05-01T10:30:00+02:00,0.250\n"
    )
    transform, _ = run_transform(bo, run_import(bo, customer, content))
    [row] = reference_rows(bo, "products", customer)
    assert row["name"] == "Name" and row["unit_price"] == Decimal("12.50")
    assert row["currency"] == "EUR" and row["active"] is True
    assert row["updated_at"].isoformat() == "2024-05-01T08:30:00+00:00"
    assert row["weight_kg"] == Decimal("0.250") and row["source_import_id"] == transform.import_id


@pytest.mark.parametrize(
    ("line", "refused"),
    [
        ("DHL,express,10115,80331,0,5,9.90,EUR,2024-01-01,2024-12-31", None),
        ("DHL,express,,80331,,,9.90,EUR,2024-01-01,", None),
        ("DHL,express,10115,80331,5,1,9.90,EUR,2024-01-01,", ("weight_max_kg", "must be at least")),
        (
            "DHL,express,10115,80331,0,5,9.90,EUR,2024-01-01,2024-01-01",
            ("expires_date", "must be after effective_date"),
        ),
        ("DHL,express,10115,80331,0,5,9.90,EUR,2024-13-01,", ("effective_date", "not a date")),
        ("DHL,express,10115,80331,0,5,9.90,EUR,,", ("effective_date", "required")),
        ("DHL,express,10115,80331,0,5,9.90,EUR,01.05.2024,", ("effective_date", "not a date")),
        ("DHL,express,10115,80331,0,5,9.90,EUR,2024-05-01 10:00,", ("effective_date", "not a")),
        ("DHL,,10115,80331,0,5,9.90,EUR,2024-01-01,", ("service", "required")),
        ("DHL,express,10115,,0,5,9.90,EUR,2024-01-01,", ("dest_postal", "required")),
        ("DHL,express,10115,80331,-1,5,9.90,EUR,2024-01-01,", ("weight_min_kg", "must be at")),
        ("DHL,express,10115,80331,0,5,,EUR,2024-01-01,", ("price", "required")),
        ("DHL,express,10115,80331,0,5,9.90,EU,2024-01-01,", ("currency", "not an ISO")),
    ],
)
def test_each_rate_rule(bo, customer, line, refused):
    transform, _ = run_transform(bo, run_import(bo, customer, RATES_HEADER + line + "\n"), "rates")
    if refused is None:
        assert counts(transform)["inserted"] == 1
    else:
        assert counts(transform)["rejected"] == 1
        assert [
            (c, r[: len(refused[1])]) for _l, c, _v, r in rejections(bo, transform.import_id)
        ] == [refused]


def test_rates_with_a_missing_origin_are_one_key(bo, customer):
    content = RATES_HEADER + (
        "DHL,express,,80331,,,9.90,EUR,2024-01-01,\nDHL,express,,80331,,,8.90,EUR,2024-01-01,\n"
    )
    transform, _ = run_transform(bo, run_import(bo, customer, content), "rates")
    assert counts(transform) == {
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "superseded": 1,
    }
    assert [r["price"] for r in reference_rows(bo, "rates", customer)] == [Decimal("8.90")]


def test_headers_match_ignoring_case_spaces_dashes_and_underscores(bo, customer):
    content = "SKU,Unit Price,unit-PRICE_x,CURRENCY,n a m e,Colour\nS1,2,9,EUR,N,red\n"
    import_id = run_import(bo, customer, content)
    transform, _ = run_transform(bo, import_id)
    assert transform.mapping == {
        "sku": "SKU",
        "name": "n a m e",
        "unit_price": "Unit Price",
        "currency": "CURRENCY",
    }
    assert transform.extra_headers == ["unit-PRICE_x", "Colour"]
    transform, _ = run_transform(bo, import_id, mapping={"unit_price": "unit-PRICE_x"})
    assert counts(transform)["updated"] == 1
    assert reference_rows(bo, "products", customer)[0]["unit_price"] == Decimal("9")


def test_an_unmapped_required_column_is_refused_before_any_work(bo, customer):
    import_id = run_import(bo, customer, "sku,name,price\nS1,N,3\n")
    with bo.session_factory() as session:
        with pytest.raises(Refused, match="unit_price, currency of products match no header"):
            transforms.create(
                session, bo.references, import_id=import_id, dataset="products", created_by=None
            )
        for mapping, message in [
            ({"cost": "price"}, "not a column"),
            ({"unit_price": "Price"}, "does not have"),
        ]:
            with pytest.raises(Refused, match=message):
                transforms.create(
                    session,
                    bo.references,
                    import_id=import_id,
                    dataset="products",
                    mapping=mapping,
                    created_by=None,
                )
        with pytest.raises(Refused, match="unknown dataset"):
            transforms.create(
                session, bo.references, import_id=import_id, dataset="nope", created_by=None
            )
