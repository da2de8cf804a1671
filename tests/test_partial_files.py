"""A file with fewer columns changes only what it maps: an unmapped column keeps its stored
value on the rows a transform updates, clearing is asked for by name, and the preview shows
value by value what would change. Through the service, the API and the command."""

import json
from decimal import Decimal

import pytest

from app.errors import Refused
from app.transforms import service as transforms
from tests.bulk import PRODUCT_HEADER, counts, reference_rows, run_import, run_transform
from tests.conftest import create_user, login
from tests.harness import backoffice

FULL = (
    "sku,name,category,weight_kg,unit_price,currency,barcode,active\n"
    "P1,Kettle,kitchen,1.2,9.99,EUR,4006381333931,true\n"
    "P2,Toaster,kitchen,2.5,19.99,EUR,4006381333948,true\n"
)
# The same products, a newer price for P1, and a new P3: no category, weight, barcode, active.
PARTIAL = PRODUCT_HEADER + "P1,Kettle,10.49,EUR\nP2,Toaster,19.99,EUR\nP3,Grill,30,EUR\n"


def stored(bo, customer) -> dict[str, dict]:
    fields = ("name", "category", "weight_kg", "unit_price", "barcode", "active")
    return {r["sku"]: {f: r[f] for f in fields} for r in reference_rows(bo, "products", customer)}


def preview(bo, import_id, **options) -> dict:
    with bo.session_factory() as session:
        found = transforms.preview(
            session, bo.references, import_id=import_id, dataset="products", **options
        )
        session.rollback()
        return found.as_dict()


def test_a_partial_file_leaves_the_columns_it_does_not_map_as_stored(bo, customer):
    run_transform(bo, run_import(bo, customer, FULL))
    before = stored(bo, customer)
    transform, outcome = run_transform(bo, run_import(bo, customer, PARTIAL))
    assert outcome.status == "succeeded"
    assert counts(transform) == {
        "inserted": 1,
        "updated": 1,  # P1's price; P2 equals what is stored in every column the file has
        "unchanged": 1,
        "rejected": 0,
        "superseded": 0,
    }
    after = stored(bo, customer)
    assert after["P1"] == {**before["P1"], "unit_price": Decimal("10.49")}
    assert after["P2"] == before["P2"]
    assert after["P3"] == {
        "name": "Grill",
        "category": None,
        "weight_kg": None,
        "unit_price": Decimal("30"),
        "barcode": None,
        "active": None,
    }
    assert transform.as_dict()["columns"] == {
        "written": ["sku", "name", "unit_price", "currency"],
        "cleared": [],
        "untouched": [
            "category",
            "weight_kg",
            "length_cm",
            "width_cm",
            "height_cm",
            "barcode",
            "active",
            "updated_at",
        ],
    }


def test_clear_empties_only_the_columns_it_names(bo, customer):
    run_transform(bo, run_import(bo, customer, FULL))
    before = stored(bo, customer)
    transform, _ = run_transform(
        bo,
        run_import(bo, customer, PARTIAL),
        mapping={"category": None, "barcode": None},
    )
    after = stored(bo, customer)
    assert counts(transform)["updated"] == 2, "P2 changes too: its category is cleared"
    for sku in ("P1", "P2"):
        assert after[sku]["category"] is None and after[sku]["barcode"] is None
        assert after[sku]["weight_kg"] == before[sku]["weight_kg"]
        assert after[sku]["active"] is True
    assert transform.as_dict()["columns"]["cleared"] == ["category", "barcode"]


def test_a_key_or_required_column_cannot_be_cleared(bo, customer):
    import_id = run_import(bo, customer, PARTIAL)
    for column, what in (("sku", "key"), ("name", "required")):
        with pytest.raises(Refused, match=f"{column} is a {what} column of products"):
            preview(bo, import_id, mapping={column: None})


def test_the_preview_shows_each_change_from_its_stored_value_to_the_new_one(bo, customer):
    run_transform(bo, run_import(bo, customer, FULL))
    import_id = run_import(bo, customer, PARTIAL)
    seen = preview(bo, import_id, mapping={"barcode": None})
    assert seen["changed_columns"] == {"name": 0, "unit_price": 1, "currency": 0, "barcode": 2}
    assert seen["changes"] == [
        {
            "line": 2,
            "key": {"sku": "P1"},
            "fields": {
                "unit_price": {"from": "9.99", "to": "10.49"},
                "barcode": {"from": "4006381333931", "to": None},
            },
        },
        {
            "line": 3,
            "key": {"sku": "P2"},
            "fields": {"barcode": {"from": "4006381333948", "to": None}},
        },
    ]
    assert seen["columns"]["cleared"] == ["barcode"]
    run_transform(bo, import_id, mapping={"barcode": None})
    after = stored(bo, customer)
    for change in seen["changes"]:  # what the preview said is what the transform did
        row = after[change["key"]["sku"]]
        for name, pair in change["fields"].items():
            assert (None if row[name] is None else str(row[name])) == pair["to"]


def test_clear_and_the_changes_through_the_api_and_the_command(
    bulk_app, bo, customer, committed_env
):
    client = bulk_app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    run_transform(bo, run_import(bo, customer, FULL))
    import_id = run_import(bo, customer, PARTIAL)
    body = {"import_id": import_id, "dataset": "products", "mapping": {"category": None}}
    shown = client.post("/api/transforms", headers=headers, json={**body, "dry_run": True})
    assert shown.status_code == 200, shown.json
    assert shown.json["preview"]["changes"][0]["fields"]["category"] == {
        "from": "kitchen",
        "to": None,
    }
    refused = client.post(
        "/api/transforms", headers=headers, json={**body, "mapping": {"sku": None}}
    )
    assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_mapping"

    printed = backoffice(
        committed_env,
        "transform",
        str(import_id),
        "--dataset",
        "products",
        "--clear",
        "category",
        "--dry-run",
    )
    assert printed.returncode == 0, printed.stderr
    assert "cleared: category" in printed.stdout
    assert "left as stored: weight_kg, length_cm" in printed.stdout
    assert "line 2, sku=P1: unit_price: '9.99' -> '10.49'" in printed.stdout
    assert "line 3, sku=P2: category: 'kitchen' -> None" in printed.stdout

    queued = client.post("/api/transforms", headers=headers, json=body)
    assert queued.status_code == 202, queued.json
    assert queued.json["transform"]["columns"]["cleared"] == ["category"]
    done = backoffice(committed_env, "transform", str(import_id), "--dataset", "products", "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)["transform"]
    assert made["columns"]["cleared"] == [] and "barcode" in made["columns"]["untouched"]
    assert stored(bo, customer)["P1"]["barcode"] == "4006381333931"
