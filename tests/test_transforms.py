"""Transforms: each value rule of both datasets, the mapping, the reject limit, re-runs, a
crash before publishing, and the routes. Jobs run for real on committed databases."""

import dataclasses
import json
from decimal import Decimal

import pytest
from sqlalchemy import text

from app.auth.services import Actor
from app.customers import services as customers
from app.db.session import session_scope
from app.errors import APIError
from app.imports import service as imports
from app.jobs import runner
from app.jobs.worker import run_now
from app.transforms import job as transform_job
from app.transforms import service as transforms
from tests.conftest import (
    RATES_HEADER,
    create_user,
    job_row,
    login,
    queue_import,
    reference_rows,
    run_import,
    run_transform,
)
from tests.harness import backoffice

ACTOR = Actor(None, "tests")
PRODUCT = "sku,name,unit_price,currency\n"


def typed_tables(bo) -> list[str]:
    """What transform attempts left of their cast rows."""
    with bo.engines.connect("data") as conn:
        return list(
            conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'workspace' "
                    "AND tablename ~ '^transform_[0-9]+_a[0-9]+$'"
                )
            ).scalars()
        )


def counts(transform) -> dict:
    d = transform.as_dict()
    return {k: d[k] for k in ("inserted", "updated", "unchanged", "rejected", "superseded")}


def rejections(bo, import_id) -> list[tuple]:
    with bo.session_factory() as session:
        rows, _ = transforms.errors_of_import(session, import_id, offset=0, limit=1000)
        return [(r.line, r.column, r.value, r.reason) for r in rows]


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
        with pytest.raises(APIError, match="unit_price, currency of products match no header"):
            transforms.create(
                session, bo.references, import_id=import_id, dataset="products", created_by=None
            )
        for mapping, message in [
            ({"cost": "price"}, "not a column"),
            ({"unit_price": "Price"}, "does not have"),
            ({"unit_price": 3}, "must be an object"),
        ]:
            with pytest.raises(APIError, match=message):
                transforms.create(
                    session,
                    bo.references,
                    import_id=import_id,
                    dataset="products",
                    mapping=mapping,
                    created_by=None,
                )
        with pytest.raises(APIError, match="unknown dataset"):
            transforms.create(
                session, bo.references, import_id=import_id, dataset="nope", created_by=None
            )


def test_over_the_reject_limit_nothing_is_published(bo, customer):
    content = PRODUCT + "S1,A,1,EUR\nS2,B,x,EUR\nS3,C,y,EUR\n"
    import_id = run_import(bo, customer, content)
    transform, outcome = run_transform(bo, import_id, max_rejects=1)
    assert outcome.status == "failed" and transform.status == "failed"
    assert counts(transform) == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 0,
        "rejected": 2,
        "superseded": 0,
    }
    assert "2 rows rejected, more than the limit of 1" in transform.error
    assert typed_tables(bo) == []
    assert reference_rows(bo, "products", customer) == [], "nothing published"
    assert len(rejections(bo, import_id)) == 2, "the errors stay readable"
    transform, _ = run_transform(bo, import_id, max_rejects=2)
    assert transform.status == "succeeded" and counts(transform)["inserted"] == 1


def test_over_the_reject_limit_the_job_fails_saying_why(bo, customer):
    import_id = run_import(bo, customer, PRODUCT + "S1,A,x,EUR\nS2,B,y,EUR\n")
    transform, _ = run_transform(bo, import_id, max_rejects=0)
    job = job_row(bo, transform.job_id)
    assert job.status == "failed"
    assert job.error == "2 rows rejected, more than the limit of 0; nothing was published"
    assert job.result["rejected"] == 2 and job.result["inserted"] == 0


def test_an_import_s_errors_come_page_by_page_its_own_first(bo, customer):
    """`imports.import_errors`: what GET /api/imports/<id>/errors and `backoffice imports
    errors` show. A failed import has its own error only; a staged one, the rows its
    transforms rejected, newest transform first."""
    failed_id, job_id = queue_import(bo, customer, b"a,b\n1,2,3\n")
    run_now(bo, job_id)
    staged_id = run_import(bo, customer, PRODUCT + "S1,A,x,EUR\nS2,B,1,XX\nS3,C,1,EUR\n")
    first, _ = run_transform(bo, staged_id)
    second, _ = run_transform(bo, staged_id)
    with bo.session_factory() as session:
        failed = imports.get_import(session, failed_id)
        own = {"line": 2, "column": None, "message": "more fields than the header's 2"}
        assert imports.import_errors(session, failed, offset=0, limit=10) == ([own], 1)
        assert imports.import_errors(session, failed, offset=1, limit=10) == ([], 1)
        staged = imports.get_import(session, staged_id)
        errors, total = imports.import_errors(session, staged, offset=0, limit=3)
        assert total == 4
        assert [(e["transform_id"], e["line"], e["column"]) for e in errors] == [
            (second.id, 2, "unit_price"),
            (second.id, 3, "currency"),
            (first.id, 2, "unit_price"),
        ]
        assert errors[0]["value"] == "x" and "not a number" in errors[0]["message"]
        rest, _ = imports.import_errors(session, staged, offset=3, limit=3)
        assert [(e["transform_id"], e["line"]) for e in rest] == [(first.id, 3)]


def test_running_a_transform_again_changes_nothing(bo, customer):
    import_id = run_import(bo, customer, PRODUCT + "S1,A,1,EUR\nS2,B,2,EUR\nS1,A2,3,EUR\n")
    first, _ = run_transform(bo, import_id)
    assert counts(first) == {
        "inserted": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
        "superseded": 1,
    }
    before = reference_rows(bo, "products", customer)
    again, _ = run_transform(bo, import_id)
    assert counts(again) == {
        "inserted": 0,
        "updated": 0,
        "unchanged": 2,
        "rejected": 0,
        "superseded": 1,
    }
    after = reference_rows(bo, "products", customer)
    assert [(r["sku"], r["name"], r["loaded_at"]) for r in after] == [
        (r["sku"], r["name"], r["loaded_at"]) for r in before
    ]
    assert [r["name"] for r in after] == ["A2", "B"], "the last row of a key wins"


def test_a_crash_before_publishing_leaves_reference_untouched_and_the_retry_publishes_once(
    bo, customer, monkeypatch
):
    import_id = run_import(bo, customer, PRODUCT + "S1,A,1,EUR\nS2,B,2,EUR\n")
    real_publish = runner.JobContext.publish
    seen = {}

    def crash_once(ctx, conn, result, status="succeeded"):
        if not seen:
            seen["rows_inside"] = conn.execute(
                text("SELECT count(*) FROM reference.products WHERE customer_id = :c"),
                {"c": customer.id},
            ).scalar()
            raise RuntimeError("the worker died here")
        return real_publish(ctx, conn, result, status)

    monkeypatch.setattr(runner.JobContext, "publish", crash_once)
    with session_scope(bo.session_factory) as session:
        transform = transforms.create(
            session, bo.references, import_id=import_id, dataset="products", created_by=None
        )
        transform_id, job_id = transform.id, transform.job_id
    assert run_now(bo, job_id).status == "retrying"
    assert seen["rows_inside"] == 2, "the upsert had run inside the transaction"
    assert reference_rows(bo, "products", customer) == [], "... and was rolled back"
    assert typed_tables(bo) == [f"transform_{transform_id}_a1"], "the cut attempt's cast rows"
    assert run_now(bo, job_id).status == "succeeded"
    with bo.session_factory() as session:
        done = transforms.get(session, transform_id)
    assert counts(done)["inserted"] == 2 and len(reference_rows(bo, "products", customer)) == 2
    assert typed_tables(bo) == [], "the retry dropped both attempts' tables"


def test_casting_on_several_connections_gives_what_one_gives(bo, customer, monkeypatch):
    """Many small batches on three connections at once, with bad rows and a key repeated
    across batches: the same counts, errors and rows as on one connection."""
    lines = [f"S{n % 40},Name {n},{n}.5,EUR" for n in range(100)]
    lines[13] = "S13,Bad,x,EUR"
    lines[71] = "S71,Bad,1,XXX"
    content = PRODUCT + "\n".join(lines) + "\n"
    monkeypatch.setattr(transform_job, "BATCH", 7)
    results = []
    for connections in (1, 3):
        monkeypatch.setattr(
            bo, "settings", dataclasses.replace(bo.settings, transform_connections=connections)
        )
        with session_scope(bo.session_factory) as session:
            other = customers.create_customer(
                session, ACTOR, code=f"{customer.code}C{connections}", name="c"
            )
        import_id = run_import(bo, other, content)
        transform, outcome = run_transform(bo, import_id)
        assert outcome.status == "succeeded"
        rows = [(r["sku"], r["name"]) for r in reference_rows(bo, "products", other)]
        errors = sorted((line, column) for line, column, _, _ in rejections(bo, import_id))
        results.append((counts(transform), rows, errors))
    assert results[0] == results[1]
    assert results[0][0] == {
        "inserted": 40,
        "updated": 0,
        "unchanged": 0,
        "rejected": 2,
        "superseded": 58,
    }
    assert results[0][2] == [(15, "unit_price"), (73, "currency")]
    assert typed_tables(bo) == []


def test_transform_routes_and_datasets(bulk_app, bo, customer):
    client = bulk_app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    datasets = {d["name"]: d for d in client.get("/api/datasets").json["datasets"]}
    assert set(datasets) == {"products", "rates"}
    assert datasets["products"]["key"] == ["sku"]
    assert {"name": "unit_price", "type": "numeric", "required": True, "minimum": 0} in datasets[
        "products"
    ]["columns"]
    import_id = run_import(bo, customer, PRODUCT + "S1,A,1,EUR\nS2,B,bad,EUR\n")
    created = client.post(
        "/api/transforms", headers=headers, json={"import_id": import_id, "dataset": "products"}
    )
    assert created.status_code == 202 and created.json["job"]["kind"] == "transform"
    run_now(bo, created.json["job"]["id"])
    shown = client.get(f"/api/transforms/{created.json['transform']['id']}").json
    assert shown["transform"]["inserted"] == 1 and shown["transform"]["rejected"] == 1
    errors = client.get(f"/api/imports/{import_id}/errors").json
    assert errors["errors"] == [
        {
            "transform_id": created.json["transform"]["id"],
            "line": 3,
            "column": "unit_price",
            "value": "bad",
            "message": errors["errors"][0]["message"],
        }
    ]
    for body, code in [
        ({"import_id": 999999, "dataset": "products"}, "not_found"),
        ({"import_id": import_id, "dataset": "nope"}, "unknown_dataset"),
        ({"import_id": "1", "dataset": "products"}, "invalid_field"),
        ({"import_id": import_id, "dataset": "products", "max_rejects": 2**63}, "invalid_field"),
    ]:
        assert (
            client.post("/api/transforms", headers=headers, json=body).json["error"]["code"] == code
        )
    with session_scope(bo.session_factory) as session:
        customers.update_customer(
            session, ACTOR, customers.get_customer(session, customer.id), status="inactive"
        )
    refused = client.post(
        "/api/transforms", headers=headers, json={"import_id": import_id, "dataset": "products"}
    )
    assert refused.status_code == 422 and refused.json["error"]["code"] == "inactive_customer"


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
    PRODUCT + "S1,A changed,1,EUR\nS2,B,2,EUR\nS3,C,3,EUR\nS4,D,x,EUR\nS3,C2,3,EUR\nS5,,-1,EUR\n"
)


def test_a_preview_counts_what_the_transform_then_does_and_writes_nothing(bo, customer):
    run_transform(bo, run_import(bo, customer, PRODUCT + "S1,A,1,EUR\nS2,B,2,EUR\n"))
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
    run_transform(bo, run_import(bo, customer, PRODUCT + "S1,A,1,EUR\nS2,B,2,EUR\n"))
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
    with pytest.raises(APIError, match="unit_price, currency of products match no header"):
        preview(bo, import_id)
    for limit in (-1, 2**63, True):
        with pytest.raises(APIError, match="max_rejects must be"):
            preview(bo, import_id, mapping={"unit_price": "price"}, max_rejects=limit)


def test_dry_run_through_the_api_and_the_command(bulk_app, bo, customer, committed_env):
    client = bulk_app.test_client()
    operator = create_user(bo.session_factory, "operator")
    headers = {"X-CSRF-Token": login(client, operator.email)}
    run_transform(bo, run_import(bo, customer, PRODUCT + "S1,A,1,EUR\nS2,B,2,EUR\n"))
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
