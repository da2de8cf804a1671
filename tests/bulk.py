"""Helpers of the bulk-work tests (imports, transforms, exports, jobs): running a job here and
reading what it left. Their fixtures (`bulk_app`, `bo`, `customer`) are in conftest.py."""

from __future__ import annotations

import time

from sqlalchemy import text

from app.db.session import session_scope
from app.exports import service as exports
from app.jobs import queue
from app.jobs.worker import run_now
from app.transforms import service as transforms
from tests.conftest import queue_import

# Leases and polls short enough that a lost worker is noticed within a test.
FAST = {"JOB_LEASE_SECONDS": "2", "JOB_HEARTBEAT_SECONDS": "0.1", "WORKER_POLL_SECONDS": "0.1"}


PRODUCT_HEADER = "sku,name,unit_price,currency\n"
RATES_HEADER = (
    "carrier,service,origin_postal,dest_postal,weight_min_kg,weight_max_kg,price,currency,"
    "effective_date,expires_date\n"
)


def run_import(bo, customer, content: str | bytes, **options) -> int:
    """Receive a file as an upload and stage it here; the import's id."""
    if isinstance(content, str):
        content = content.encode()
    import_id, job_id = queue_import(bo, customer, content, **options)
    assert run_now(bo, job_id).status == "succeeded"
    return import_id


def run_transform(bo, import_id: int, dataset: str = "products", **options):
    """Create a transform and run its job here; (the transform after, the job's outcome)."""
    with session_scope(bo.session_factory) as session:
        transform = transforms.create(
            session, bo.references, import_id=import_id, dataset=dataset, created_by=None, **options
        )
        transform_id, job_id = transform.id, transform.job_id
    outcome = run_now(bo, job_id)
    with bo.session_factory() as session:
        return transforms.get(session, transform_id), outcome


def run_export(bo, customer, dataset, output=None, fmt="csv", neutralize=False):
    """Create an export and run its job here (`output`: a path this process vouches for);
    (the export after, the job's outcome)."""
    with session_scope(bo.session_factory) as session:
        export = exports.create(
            session,
            bo.references,
            dataset=dataset,
            customer_id=customer.id,
            format=fmt,
            created_by=None,
            output=str(output) if output else None,
            neutralize_formulas=neutralize,
        )
        export_id, job_id = export.id, export.job_id
    outcome = run_now(bo, job_id, files=[str(output)] if output else [])
    with bo.session_factory() as session:
        return exports.get(session, export_id), outcome


def reference_rows(bo, dataset: str, customer) -> list[dict]:
    """A customer's rows of a reference table, in key order."""
    with bo.engines.connect("data") as conn:
        rows = conn.execute(
            text(f"SELECT * FROM reference.{dataset} WHERE customer_id = :c ORDER BY 2, 3"),
            {"c": customer.id},
        ).mappings()
        return [dict(r) for r in rows]


def csv_rows(n: int) -> bytes:
    """A CSV file of `n` rows after its header."""
    return b"sku,name,price\n" + b"".join(b"S%d,Name %d,%d.50\n" % (i, i, i) for i in range(n))


def job_row(bo, job_id: int):
    with bo.session_factory() as session:
        return queue.get_job(session, job_id)


def staged_count(bo, import_id: int) -> int:
    with bo.engines.connect("data") as conn:
        return conn.execute(text(f"SELECT count(*) FROM workspace.import_{import_id}")).scalar()


def wait_for(predicate, seconds: float, interval: float = 0.02):
    """The predicate's first true value within `seconds`, else its last value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


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


def crash_first_publish(monkeypatch, customer) -> dict:
    """The first publish of a job dies, as a worker killed there would, after noting in the
    returned dict (`rows_inside`) how many of the customer's products its transaction held."""
    from app.jobs import runner

    real_publish = runner.JobContext.publish
    seen: dict = {}

    def crash_once(ctx, conn, result, status="succeeded"):
        if not seen:
            seen["rows_inside"] = conn.execute(
                text("SELECT count(*) FROM reference.products WHERE customer_id = :c"),
                {"c": customer.id},
            ).scalar()
            raise RuntimeError("the worker died here")
        return real_publish(ctx, conn, result, status)

    monkeypatch.setattr(runner.JobContext, "publish", crash_once)
    return seen
