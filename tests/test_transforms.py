"""Transforms: the reject limit, an import's errors, re-runs, a crash before publishing,
casting on several connections, and the routes. Jobs run for real on committed databases."""

import dataclasses
import threading
import time

from sqlalchemy import text

from app.audit import Actor
from app.customers import service as customers
from app.db.session import session_scope
from app.imports import service as imports
from app.jobs.worker import run_now
from app.transforms import job as transform_job
from app.transforms import service as transforms
from tests.bulk import (
    PRODUCT_HEADER,
    counts,
    crash_first_publish,
    job_row,
    reference_rows,
    rejections,
    run_import,
    run_transform,
    typed_tables,
    wait_for,
)
from tests.conftest import create_user, login, queue_import

ACTOR = Actor(None, "tests")


def test_over_the_reject_limit_nothing_is_published(bo, customer):
    content = PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,x,EUR\nS3,C,y,EUR\n"
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
    import_id = run_import(bo, customer, PRODUCT_HEADER + "S1,A,x,EUR\nS2,B,y,EUR\n")
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
    staged_id = run_import(bo, customer, PRODUCT_HEADER + "S1,A,x,EUR\nS2,B,1,XX\nS3,C,1,EUR\n")
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
    import_id = run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,2,EUR\nS1,A2,3,EUR\n")
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
    import_id = run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,2,EUR\n")
    seen = crash_first_publish(monkeypatch, customer)
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
    content = PRODUCT_HEADER + "\n".join(lines) + "\n"
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
    import_id = run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,bad,EUR\n")
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
        ({"import_id": import_id, "dataset": "products", "max_rejects": True}, "invalid_field"),
        ({"import_id": import_id, "dataset": "products", "mapping": {"sku": 3}}, "invalid_field"),
        ({"import_id": import_id, "dataset": "products", "dry_run": "yes"}, "invalid_field"),
    ]:
        assert (
            client.post("/api/transforms", headers=headers, json=body).json["error"]["code"] == code
        )
    with session_scope(bo.session_factory) as session:
        customers.update_customer(
            session, ACTOR, customers.get_customer(session, customer.id), status="inactive"
        )
    # The change notice reaches this process's listener a moment after the commit.
    deadline = time.monotonic() + 10
    while bo.references.cache.get(("customer", customer.id)) and time.monotonic() < deadline:
        time.sleep(0.01)
    refused = client.post(
        "/api/transforms", headers=headers, json={"import_id": import_id, "dataset": "products"}
    )
    assert refused.status_code == 422 and refused.json["error"]["code"] == "inactive_customer"


def test_batch_by_batch_counts_what_one_upsert_of_the_file_counts(bo, customer, monkeypatch):
    """Upserted in batches of 3 as they are cast: new, changed and equal rows over stored
    ones are counted as one upsert of the whole file counts them."""
    stored = "".join(f"S{n},Old {n},{n},EUR\n" for n in range(10))
    run_transform(bo, run_import(bo, customer, PRODUCT_HEADER + stored))
    # S5..S9 stored; the even ones change their name, the odd ones stay; S10..S14 are new.
    lines = "".join(f"S{n},{'Old' if n % 2 else 'New'} {n},{n},EUR\n" for n in range(5, 15))
    monkeypatch.setattr(transform_job, "BATCH", 3)
    transform, outcome = run_transform(bo, run_import(bo, customer, PRODUCT_HEADER + lines))
    assert outcome.status == "succeeded"
    assert counts(transform) == {
        "inserted": 5,
        "updated": 2,
        "unchanged": 3,
        "rejected": 0,
        "superseded": 0,
    }
    names = {r["sku"]: r["name"] for r in reference_rows(bo, "products", customer)}
    assert len(names) == 15 and names["S6"] == "New 6" and names["S7"] == "Old 7"
    assert typed_tables(bo) == []


def test_a_key_repeated_in_a_later_batch_supersedes_an_unchanged_row(bo, customer, monkeypatch):
    """The first S1 equals the stored row (its batch writes nothing), the second, in the next
    batch, changes it: one update and one superseded row, as for the whole file at once."""
    run_transform(bo, run_import(bo, customer, PRODUCT_HEADER + "S1,A,1,EUR\n"))
    monkeypatch.setattr(transform_job, "BATCH", 2)
    content = PRODUCT_HEADER + "S1,A,1,EUR\nS2,X,2,EUR\nS3,Y,3,EUR\nS1,B,1,EUR\n"
    transform, outcome = run_transform(bo, run_import(bo, customer, content))
    assert outcome.status == "succeeded"
    assert counts(transform) == {
        "inserted": 2,
        "updated": 1,
        "unchanged": 0,
        "rejected": 0,
        "superseded": 1,
    }
    names = {r["sku"]: r["name"] for r in reference_rows(bo, "products", customer)}
    assert names == {"S1": "B", "S2": "X", "S3": "Y"}, "the last row of a key wins"


def test_batches_upserted_before_the_reject_limit_is_passed_are_undone(bo, customer, monkeypatch):
    monkeypatch.setattr(transform_job, "BATCH", 2)
    content = PRODUCT_HEADER + "S1,A,1,EUR\nS2,B,2,EUR\nS3,C,3,EUR\nS4,D,x,EUR\nS5,E,y,EUR\n"
    transform, outcome = run_transform(bo, run_import(bo, customer, content), max_rejects=1)
    assert outcome.status == "failed"
    assert counts(transform)["rejected"] == 2 and counts(transform)["inserted"] == 0
    assert reference_rows(bo, "products", customer) == [], "nothing published"
    assert [line for line, *_ in rejections(bo, transform.import_id)] == [5, 6]
    assert typed_tables(bo) == []


def test_cancelling_a_transform_stops_its_casts_and_its_writes_and_leaves_nothing(
    bo, customer, monkeypatch
):
    """The writer waits on a lock, for certain mid-statement, while the casters work through
    their batches; a cancel stops both and publishes nothing."""
    monkeypatch.setattr(transform_job, "BATCH", 2)
    content = PRODUCT_HEADER + "".join(f"S{n},N{n},{n},EUR\n" for n in range(40))
    import_id = run_import(bo, customer, content)
    with session_scope(bo.session_factory) as session:
        transform = transforms.create(
            session, bo.references, import_id=import_id, dataset="products", created_by=None
        )
        transform_id, job_id = transform.id, transform.job_id
    outcome = {}
    with bo.engines.begin("data") as blocker:
        blocker.execute(text("LOCK TABLE reference.products IN ACCESS EXCLUSIVE MODE"))
        runner_thread = threading.Thread(target=lambda: outcome.update(result=run_now(bo, job_id)))
        runner_thread.start()
        assert wait_for(lambda: typed_partitions_filled(bo, transform_id) > 0, 10)
        with bo.engines.begin("data") as conn:
            conn.execute(
                text("UPDATE workspace.jobs SET cancel_requested = true WHERE id = :id"),
                {"id": job_id},
            )
        runner_thread.join(timeout=10)
    assert outcome["result"].status == "cancelled"
    with bo.session_factory() as session:
        assert transforms.get(session, transform_id).status == "cancelled"
    assert reference_rows(bo, "products", customer) == []
    assert typed_tables(bo) == []


def typed_partitions_filled(bo, transform_id: int) -> int:
    """How many of a transform's typed partitions hold cast rows (committed batches)."""
    with bo.engines.connect("data") as conn:
        names = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'workspace' AND tablename ~ :p"
            ),
            {"p": f"^transform_{transform_id}_a[0-9]+_p[0-9]+$"},
        ).scalars()
        return sum(
            conn.execute(text(f'SELECT count(*) > 0 FROM workspace."{name}"')).scalar()
            for name in list(names)
        )
