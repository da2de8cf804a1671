"""A transform's preview (dry run): the transform's own counts and refusals on the first rows,
nothing written; through the service, the API and the command."""

import json

import pytest
from sqlalchemy import text

from app.errors import Refused
from app.transforms import service as transforms
from tests.bulk import (
    PRODUCT_HEADER,
    RATES_HEADER,
    counts,
    reference_rows,
    rejections,
    run_import,
    run_transform,
    typed_tables,
)
from tests.conftest import create_user, login
from tests.harness import backoffice


def footprint(bo, customer) -> dict:
    """Everything a transform writes: the customer's reference rows, transforms, their errors,
    jobs, and typed tables."""
    with bo.engines.connect("data") as conn:
        tables = {
            name: conn.execute(text(f"SELECT count(*) FROM workspace.{name}")).scalar()
            for name in ("transforms", "transform_errors", "jobs")
        }
    return {
        **tables,
        "products": reference_rows(bo, "products", customer),
        "typed": typed_tables(bo),
    }


def preview(bo, import_id, dataset="products", **options) -> dict:
    with bo.session_factory() as session:
        found = transforms.preview(
            session, bo.references, import_id=import_id, dataset=dataset, **options
        )
        session.rollback()
        return found.as_dict()


# Against stored S1 (A, 1) and S2 (B, 2): S1 changes, S2 stays, S3 is new and repeated, two
# rows are refused (lines 5 and 7, one with two refused values).
CHANGES = (
    PRODUCT_HEADER
    + "S1,A changed,1,EUR\nS2,B,2,EUR\nS3,C,3,EUR\nS4,D,x,EUR\nS3,C2,3,EUR\nS5,,-1,EUR\n"
)


def test_a_preview_counts_what_the_transform_then_does_and_writes_nothing(bo, customer):
    run_transform(bo, run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,2,EUR\n"))
    import_id = run_import(bo, customer, CHANGES)
    before = footprint(bo, customer)
    seen = preview(bo, import_id, max_rejects=1)
    assert footprint(bo, customer) == before, "nothing written, nothing left behind"
    expected = {"inserted": 1, "updated": 1, "unchanged": 1, "rejected": 2, "superseded": 1}
    assert {k: seen[k] for k in expected} == expected
    assert (seen["rows_previewed"], seen["rows_staged"], seen["complete"]) == (6, 6, True)
    assert seen["over_max_rejects"] is True
    transform, _ = run_transform(bo, import_id)
    assert counts(transform) == expected, "the real run does what the preview said"
    assert [(r["line"], r["column"], r["value"], r["reason"]) for r in seen["rejects"]] == sorted(
        rejections(bo, import_id)
    )
    assert [(r["line"], r["column"]) for r in seen["rejects"]] == [
        (5, "unit_price"),
        (7, "name"),
        (7, "unit_price"),
    ]


def test_a_preview_of_a_large_import_casts_only_its_first_rows(bo, customer, monkeypatch):
    monkeypatch.setattr(transforms, "PREVIEW_ROWS", 4)
    monkeypatch.setattr(transforms, "PREVIEW_REJECTS", 1)
    run_transform(bo, run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,2,EUR\n"))
    seen = preview(bo, run_import(bo, customer, CHANGES))
    assert (seen["rows_previewed"], seen["rows_staged"], seen["complete"]) == (4, 6, False)
    assert [r["line"] for r in seen["rejects"]] == [5], "the first rejected row only"
    first_rows = "".join(CHANGES.splitlines(keepends=True)[:5])
    transform, _ = run_transform(bo, run_import(bo, customer, first_rows))
    assert {k: seen[k] for k in counts(transform)} == counts(transform)


def test_a_preview_of_rates_matches_keys_with_empty_columns(bo, customer):
    stored = (
        "DHL,express,,80331,,,9.90,EUR,2024-01-01,\nDHL,express,1,80331,0,5,9.90,EUR,2024-01-01,\n"
    )
    run_transform(bo, run_import(bo, customer, RATES_HEADER + stored), "rates")
    import_id = run_import(bo, customer, RATES_HEADER + stored.replace("9.90", "8.90", 1))
    seen = preview(bo, import_id, "rates")
    transform, _ = run_transform(bo, import_id, "rates")
    assert {k: seen[k] for k in counts(transform)} == counts(transform)
    assert counts(transform) == {
        "inserted": 0,
        "updated": 1,
        "unchanged": 1,
        "rejected": 0,
        "superseded": 0,
    }


def test_a_preview_refuses_what_the_transform_refuses(bo, customer):
    import_id = run_import(bo, customer, "sku,name,price\nS1,N,3\n")
    with pytest.raises(Refused, match="unit_price, currency of products match no header"):
        preview(bo, import_id)
    for limit in (-1, 2**63):
        with pytest.raises(Refused, match="max_rejects must be"):
            preview(bo, import_id, mapping={"unit_price": "price"}, max_rejects=limit)


def test_dry_run_through_the_api_and_the_command(bulk_app, bo, customer, committed_env):
    client = bulk_app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    run_transform(bo, run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,2,EUR\n"))
    import_id = run_import(bo, customer, CHANGES)
    before = footprint(bo, customer)
    body = {"import_id": import_id, "dataset": "products", "dry_run": True}
    answer = client.post("/api/transforms", headers=headers, json=body)
    assert answer.status_code == 200, answer.json
    shown = answer.json["preview"]
    assert "job" not in answer.json and "transform" not in answer.json
    assert {k: shown[k] for k in ("inserted", "updated", "unchanged", "rejected")} == {
        "inserted": 1,
        "updated": 1,
        "unchanged": 1,
        "rejected": 2,
    }
    assert shown["rejects"][0] == {
        "line": 5,
        "column": "unit_price",
        "value": "x",
        "reason": shown["rejects"][0]["reason"],
    }
    refused = client.post("/api/transforms", headers=headers, json={**body, "dry_run": "yes"})
    assert refused.status_code == 422 and refused.json["error"]["code"] == "invalid_field"
    assert "dry_run" in refused.json["error"]["message"]

    printed = backoffice(
        committed_env, "transform", str(import_id), "--dataset", "products", "--dry-run"
    )
    assert printed.returncode == 0, printed.stderr
    assert "preview: all 6 rows of import" in printed.stdout
    assert "nothing was written" in printed.stdout
    assert "inserted 1, updated 1, unchanged 1, rejected 2, superseded 1" in printed.stdout
    assert "line 5, unit_price: 'x': not a number" in printed.stdout
    as_json = backoffice(
        committed_env, "transform", str(import_id), "--dataset", "products", "--dry-run", "--json"
    )
    assert json.loads(as_json.stdout)["preview"]["superseded"] == 1
    assert footprint(bo, customer) == before, "no transform, error, job or reference row"
    admin = create_user(bo.session_factory, "admin")
    admin_client = bulk_app.test_client()
    login(admin_client, admin.email)
    entries = admin_client.get("/api/audit?action=transform.create&limit=1000").json["entries"]
    assert not any(e.get("details", {}).get("import_id") == import_id for e in entries)
