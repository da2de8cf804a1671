"""Purging a customer's data from the data engine, so that the customer can then be deleted.

The order, and what a crash at each point leaves:

1. The customer is made inactive on the primary engine, committed and announced: from then on
   every process refuses new imports, transforms and exports for it (the reference check).
2. Its queued jobs are cancelled and its running ones told to stop; the purge waits for them
   (a job could still write rows after the purge passed), else refuses with 409 `customer_busy`.
3. Its rows go from the data engine in short batches, each committed on its own: transform
   errors, the staging and cast tables, export files (before their rows), then every table
   with a `customer_id` (reference rows, transforms, exports, imports with their stored bytes,
   jobs). A crash leaves fewer rows, each still complete: running the purge again finishes it.
4. One audit row on the primary engine says what went.
5. Only then may the customer be deleted (primary). Data rows point at the customer, never the
   other way: deleting the data first means a crash between the two engines leaves a customer
   with no data, never data whose customer is gone.

Runs its own transactions (like the retention prune), so it takes the backoffice, not a session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select, text

from app.audit import Actor
from app.customers.service import update_customer
from app.db.base import metadata_of
from app.db.session import BackofficeSession, session_scope
from app.errors import Refused
from app.exports.service import export_dir, remove_files
from app.jobs import queue
from app.models.data.workspace import Job
from app.models.primary.customer import Customer

if TYPE_CHECKING:
    from app import Backoffice

BATCH_SIZE = 5000
IMPORT_BATCH = 50  # imports carry their stored file: fewer per statement
BUSY_RETRY_AFTER = 5
# Tables whose rows another table's `customer_id` rows own (ON DELETE CASCADE), purged first
# in batches of their own so that no single statement deletes a customer's whole history.
ERRORS = (
    "workspace.transform_errors",
    "transform_id IN (SELECT id FROM workspace.transforms WHERE customer_id = :customer)",
)
# The order of the tables with a customer_id: what points at a job goes before the jobs.
LAST = {"workspace.imports": 1, "workspace.jobs": 2}


@dataclass
class Purge:
    """What went, per table (and `export_files`, `tables` dropped), and whether all did."""

    counts: dict[str, int] = field(default_factory=dict)
    done: bool = False

    def add(self, kind: str, n: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


def purge_customer_data(
    bo: Backoffice,
    actor: Actor,
    customer_id: int,
    *,
    wait_seconds: float = 30.0,
    deadline: float | None = None,
    batch_size: int = BATCH_SIZE,
) -> Purge:
    """Remove everything the data engine holds for the customer. `deadline` (a
    `time.monotonic()` value): stop between batches when it passes, with `done` False; calling
    again goes on where this stopped. Audited once per call that removed anything."""
    factory = bo.session_factory
    with session_scope(factory) as session:
        customer = session.get_or_404(Customer, customer_id, "customer")
        code = customer.code
        if customer.status != "inactive":
            update_customer(session, actor, customer, status="inactive")
    _stop_jobs(bo, customer_id, code, wait_seconds)
    purge = Purge()
    try:
        for kind, size, one_batch in _steps(bo, customer_id, batch_size):
            while True:  # a kind's batches, until one comes back short
                if deadline is not None and time.monotonic() > deadline:
                    return purge
                with session_scope(factory) as session:
                    removed = one_batch(session, size)
                purge.add(kind, removed)
                if removed < size:
                    break
        purge.done = True
        return purge
    finally:
        if any(purge.counts.values()) or purge.done:
            with session_scope(factory) as session:
                actor.audit(
                    session,
                    "customer.purge_data",
                    target_type="customer",
                    target_id=customer_id,
                    code=code,
                    removed={k: v for k, v in purge.counts.items() if v},
                    complete=purge.done,
                )


def _stop_jobs(bo: Backoffice, customer_id: int, code: str, wait_seconds: float) -> None:
    """Cancel the customer's queued jobs, ask its running ones to stop, and wait for them."""
    with session_scope(bo.session_factory) as session:
        for job in _unfinished(session, customer_id):
            try:
                queue.request_cancel(session, job)
            except Refused as ended:  # it ended since it was read
                if ended.code != "job_ended":
                    raise
    until = time.monotonic() + wait_seconds
    while True:
        with bo.session_factory() as session:
            running = [job.id for job in _unfinished(session, customer_id)]
        if not running:
            return
        if time.monotonic() >= until:
            raise Refused(
                f"customer {code} still has running job(s) {', '.join(map(str, running))}; "
                "they have been told to stop: try again in a few seconds",
                code="customer_busy",
                status=409,
            ).with_header("Retry-After", str(BUSY_RETRY_AFTER))
        time.sleep(0.2)


def _unfinished(session: BackofficeSession, customer_id: int) -> list[Job]:
    unfinished = select(Job).where(
        Job.customer_id == customer_id, Job.status.in_(("queued", "running"))
    )
    return list(session.scalars(unfinished))


Batch = Callable[[BackofficeSession, int], int]  # removes at most that many; how many went


def _steps(bo: Backoffice, customer_id: int, batch_size: int) -> list[tuple[str, int, Batch]]:
    """What goes, in order: (kind, batch size, one batch)."""
    params = {"customer": customer_id}

    def errors(session: BackofficeSession, size: int) -> int:
        return _delete_some(session, ERRORS[0], ERRORS[1], params, size)

    def tables(session: BackofficeSession, size: int) -> int:
        return _drop_work_tables(session, customer_id, size)

    def files(session: BackofficeSession, size: int) -> int:
        conn = session.connection_for("data")
        rows = conn.execute(
            text(
                "SELECT id, file_name FROM workspace.exports WHERE customer_id = :customer "
                "AND file_name IS NOT NULL ORDER BY id LIMIT :limit"
            ),
            {**params, "limit": size},
        ).all()
        remove_files(conn, export_dir(bo.settings, bo.instance_path), rows)
        return len(rows)

    def rows_of(table: str) -> Batch:
        return lambda session, size: _delete_some(
            session, table, "customer_id = :customer", params, size
        )

    return [
        (ERRORS[0], batch_size, errors),
        ("tables", 100, tables),
        ("export_files", batch_size, files),
        *(
            (table, IMPORT_BATCH if table == "workspace.imports" else batch_size, rows_of(table))
            for table in _owned_tables()
        ),
    ]


def _owned_tables() -> list[str]:
    """Every data-engine table with a customer_id, jobs last (the others point at them)."""
    names = [
        table.fullname
        for table in metadata_of("data").tables.values()
        if "customer_id" in table.columns
    ]
    return sorted(names, key=lambda name: (LAST.get(name, 0), name))


def _delete_some(
    session: BackofficeSession, table: str, where: str, params: dict, limit: int
) -> int:
    statement = (
        f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("
        f"SELECT ctid FROM {table} WHERE {where} LIMIT :limit))"
    )
    conn = session.connection_for("data")
    return conn.execute(text(statement), {**params, "limit": limit}).rowcount


def _drop_work_tables(session: BackofficeSession, customer_id: int, limit: int) -> int:
    """The staging tables of the customer's imports (`import_<id>`, `import_<id>_a<n>`) and
    the cast tables of its transforms (`transform_<id>_a<n>`): at most `limit` of them."""
    conn = session.connection_for("data")
    names = conn.execute(
        text(
            "SELECT t.tablename FROM pg_tables t WHERE t.schemaname = 'workspace' AND ("
            " substring(t.tablename FROM :staging)::bigint IN "
            "  (SELECT id FROM workspace.imports WHERE customer_id = :customer)"
            " OR substring(t.tablename FROM :cast)::bigint IN "
            "  (SELECT id FROM workspace.transforms WHERE customer_id = :customer))"
            " ORDER BY 1 LIMIT :limit"
        ),
        {
            "customer": customer_id,
            "limit": limit,
            "staging": "^import_([0-9]+)(?:_a[0-9]+)?$",
            "cast": "^transform_([0-9]+)_a[0-9]+$",
        },
    ).scalars()
    dropped = 0
    for name in list(names):
        conn.execute(text(f'DROP TABLE IF EXISTS workspace."{name}"'))
        dropped += 1
    return dropped
