"""The transform job: an import's staged text cast into a dataset's reference table.

The staged text is cast and checked once, batch by batch on a few connections at once, into
the attempt's table of typed rows. As each batch is cast, its valid rows are upserted in the
one transaction on the data engine that publishes (reporting progress), while the next batches
are cast; then the refused rows are written to `workspace.transform_errors` with their reasons,
the typed table is dropped and the fenced publish commits. Readers of `reference` see the whole
transform or none of it.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import Connection, select, text

from app.datasets import DATASETS
from app.imports.staged import LOST, lost_in_a_crash
from app.jobs.runner import JobContext, JobFailed
from app.models.data.workspace import ImportBatch, Transform
from app.transforms import revert
from app.transforms.history import writing
from app.transforms.service import COUNTS, plan_for, server_refusal
from app.transforms.sql import Plan

BATCH = 250_000  # rows cast per statement (one progress step)


def drop_typed_tables(conn: Connection, transform_id: int) -> None:
    """The cast rows of every attempt of a transform (`workspace.transform_<id>_a<n>`)."""
    names = conn.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'workspace' AND tablename ~ :p"),
        {"p": f"^transform_{int(transform_id)}_a[0-9]+$"},
    ).scalars()
    for name in list(names):
        conn.execute(text(f'DROP TABLE IF EXISTS workspace."{name}"'))


class TransformJob:
    def run(self, ctx: JobContext) -> dict[str, Any]:
        transform_id = ctx.params["transform_id"]
        with ctx.data_transaction() as conn:
            reverts = conn.execute(
                select(Transform.reverts_id).where(Transform.id == transform_id)
            ).scalar_one()
        if reverts is not None:  # a revert is a transform job too (app/transforms/revert.py)
            return revert.run(ctx, transform_id)
        with ctx.data_transaction() as conn:
            transform = conn.execute(
                select(Transform.__table__).where(Transform.id == transform_id)
            ).one()
            if transform.status == "succeeded":  # a retry after a publish that did commit
                result = {"transform_id": transform.id, **transform.counts}
                ctx.publish(conn, result)
                return result
            batch = conn.execute(
                select(ImportBatch.__table__).where(ImportBatch.id == transform.import_id)
            ).one()
            refusal = server_refusal(conn, counting=True)
            if refusal:
                raise JobFailed(refusal)
            cursor = conn.connection.dbapi_connection.cursor()
            if lost_in_a_crash(cursor, batch.id, batch.rows_staged):
                raise JobFailed(LOST.format(id=batch.id))
        plan = plan_for(
            batch,
            DATASETS[transform.dataset],
            transform.mapping,
            f"transform_{transform.id}_a{ctx.claim.attempt}",
        )
        total = batch.rows_staged or 0
        with ctx.data_transaction() as conn:
            drop_typed_tables(conn, transform.id)  # what earlier attempts left
            cursor = conn.connection.dbapi_connection.cursor()
            for statement in plan.partitioned_table(BATCH, total):
                cursor.execute(statement)
        with _Casting(ctx, plan, total) as casting, ctx.data_transaction() as conn:
            conn.execute(text("SET LOCAL timezone = 'UTC'"))
            conn.execute(text("SET LOCAL work_mem = '64MB'"))
            writing(conn, transform)
            cursor = conn.connection.dbapi_connection.cursor()
            batches = _Batches(cursor, plan, transform.customer_id, batch.id, transform.id)
            done = 0
            for low in casting.finished():
                if transform.max_rejects is None or casting.refused <= transform.max_rejects:
                    batches.upsert(low)
                done += min(BATCH, total - low)
                ctx.report(done, total, "rows")
                ctx.check()
            rejected = casting.refused
            over_limit = transform.max_rejects is not None and rejected > transform.max_rejects
            counts = {"rejected": rejected}
            if over_limit:
                batches.undo()
                counts.update(inserted=0, updated=0, unchanged=0, superseded=0)
            else:
                counts.update(batches.counts(total - rejected))
            if rejected:  # after the batches, which may be rolled back
                cursor.execute(plan.reject(transform.id, batch.id))
            if over_limit:
                drop_typed_tables(conn, transform.id)
                return self._refuse(ctx, conn, transform, counts)
            drop_typed_tables(conn, transform.id)  # with the publish: a retry finds it, or nothing
            result = {
                "transform_id": transform.id,
                **counts,
                "extra_headers": transform.extra_headers,
            }
            conn.execute(
                text(
                    "UPDATE workspace.transforms SET status = 'succeeded', "
                    "counts = CAST(:counts AS jsonb), finished_at = clock_timestamp() "
                    "WHERE id = :id"
                ),
                {"counts": json.dumps({k: counts[k] for k in COUNTS}), "id": transform.id},
            )
            ctx.publish(conn, result)
        return result

    def _refuse(self, ctx: JobContext, conn: Connection, transform, counts: dict) -> dict[str, Any]:
        """Over the reject limit: nothing published, the errors kept for reading."""
        message = (
            f"{counts['rejected']} rows rejected, more than the limit of "
            f"{transform.max_rejects}; nothing was published"
        )
        conn.execute(
            text(
                "UPDATE workspace.transforms SET status = 'failed', error = :error, "
                "counts = CAST(:counts AS jsonb), finished_at = clock_timestamp() "
                "WHERE id = :id"
            ),
            {"error": message, "counts": json.dumps(counts), "id": transform.id},
        )
        result = {"transform_id": transform.id, **counts}
        ctx.publish(conn, result, status="failed", error=message)
        return result

    def on_failed(self, conn: Connection, params: dict, error: dict) -> None:
        drop_typed_tables(conn, params["transform_id"])
        conn.execute(
            text(
                "UPDATE workspace.transforms SET status = 'failed', error = :e, "
                "finished_at = clock_timestamp() WHERE id = :id AND status = 'pending'"
            ),
            {"e": error.get("message"), "id": params["transform_id"]},
        )

    def on_cancelled(self, conn: Connection, params: dict) -> None:
        drop_typed_tables(conn, params["transform_id"])
        conn.execute(
            text(
                "UPDATE workspace.transforms SET status = 'cancelled', "
                "finished_at = clock_timestamp() WHERE id = :id AND status = 'pending'"
            ),
            {"id": params["transform_id"]},
        )


class _Casting:
    """Casts and checks every staged row into the attempt's typed table, batch by batch, on
    TRANSFORM_CONNECTIONS connections of its own (the casts are the transform's CPU work, and
    one statement uses one core of the data server). Each batch commits on its own (the table
    is the attempt's alone, and the publish drops it); `finished()` hands each one over as it
    commits, so that its upsert runs while the next batches are cast."""

    def __init__(self, ctx: JobContext, plan: Plan, total: int) -> None:
        self.ctx, self.plan = ctx, plan
        self.refused = 0  # rows refused so far
        self._lows = iter(range(0, max(total, 1), BATCH))
        self._lock = threading.Lock()
        self._finished: queue.Queue[int | None] = queue.Queue()  # None: a caster has stopped
        self._failures: list[BaseException] = []
        self._stop = threading.Event()
        connections = min(ctx.backoffice.settings.transform_connections, -(-total // BATCH))
        self._threads = [threading.Thread(target=self._cast) for _ in range(max(connections, 1))]

    def __enter__(self) -> _Casting:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:  # the upserts failed: the casts stop too
            self._stop.set()
            self.ctx.interrupt()
        for thread in self._threads:
            thread.join()

    def finished(self) -> Iterator[int]:
        """The low end of each batch cast (its rec range is (low, low + BATCH]), as each
        commits; raises what stopped a caster, once all have stopped."""
        running = len(self._threads)
        while running:
            low = self._finished.get()
            if low is None:
                running -= 1
            elif not self._failures:
                yield low
        if self._failures:
            raise self._failures[0]

    def _cast(self) -> None:
        statement = self.plan.cast_batch()
        try:
            with self.ctx.data_connection() as conn:
                cursor = conn.connection.dbapi_connection.cursor()
                while not (self._failures or self._stop.is_set()):
                    with self._lock:
                        low = next(self._lows, None)
                    if low is None:
                        return
                    self.ctx.check()
                    with conn.begin():
                        conn.execute(text("SET LOCAL timezone = 'UTC'"))
                        # The batch's `ok` flags, counted, in memory: at the default 4MB they
                        # went to a temporary file, one per batch.
                        conn.execute(text("SET LOCAL work_mem = '32MB'"))
                        bad = cursor.execute(statement, (low, low + BATCH)).fetchone()[0]
                    with self._lock:
                        self.refused += bad
                    self._finished.put(low)
        except BaseException as exc:  # handed to the job's thread, which raises it
            self._failures.append(exc)
            self.ctx.interrupt()  # the other connections stop too
        finally:
            self._finished.put(None)


class _Batches:
    """The valid rows upserted batch by batch as their casts finish, in the publishing
    transaction, and counted as one upsert of the whole file would count them.

    Batch by batch, a key repeated in the file (rare) would be counted wrongly: its second
    row would update the first instead of superseding it. So when every valid row was not a
    new key, the valid rows' distinct keys are counted; if a key repeats (or repeats inside a
    batch, which PostgreSQL refuses), the batches are rolled back and one upsert of the whole
    file runs instead, keeping the last row of each key.

    Counted without RETURNING and without counting the customer's rows before and after
    (seconds at 11M rows): new keys are the server's own count of this transaction's inserts
    into the table, read around the statements; the rest of their row counts are updates."""

    def __init__(
        self, cursor, plan: Plan, customer_id: int, import_id: int, transform_id: int
    ) -> None:
        self.cursor, self.plan = cursor, plan
        self.customer_id, self.import_id, self.transform_id = customer_id, import_id, transform_id
        self.repeated = False
        self.written = 0
        self._batch = plan.upsert(
            customer_id, import_id, transform_id, deduplicate=False, batch=True
        )
        cursor.execute("SAVEPOINT batches")
        self.before = self._inserted()

    def _inserted(self) -> int:
        return self.cursor.execute(self.plan.write_counts()).fetchone()[0]

    def upsert(self, low: int) -> None:
        if self.repeated:
            return
        try:
            self.written += self.cursor.execute(self._batch, (low, low + BATCH)).rowcount
        except psycopg.errors.CardinalityViolation:
            self.undo()
            self.repeated = True

    def undo(self) -> None:
        self.cursor.execute("ROLLBACK TO SAVEPOINT batches")

    def counts(self, valid: int) -> dict[str, int]:
        if not self.repeated:
            inserted = self._inserted() - self.before
            # Every valid row a new key: none repeats. Otherwise, count the keys.
            if inserted == valid or self._distinct() == valid:
                self.cursor.execute("RELEASE SAVEPOINT batches")
                return _counted(inserted, self.written, distinct=valid, valid=valid)
            self.undo()
        self.cursor.execute("RELEASE SAVEPOINT batches")
        # One upsert of every valid row, the last row of each key kept.
        before = self._inserted()  # the rolled-back batches count too
        written = self.cursor.execute(
            self.plan.upsert(self.customer_id, self.import_id, self.transform_id, deduplicate=True)
        ).rowcount
        inserted = self._inserted() - before
        return _counted(inserted, written, distinct=self._distinct(), valid=valid)

    def _distinct(self) -> int:
        return self.cursor.execute(self.plan.distinct_valid()).fetchone()[0]


def _counted(inserted: int, written: int, *, distinct: int, valid: int) -> dict[str, int]:
    """A transform's counts from its new keys, its rows written, and its valid rows' keys."""
    updated = written - inserted
    return {
        "inserted": inserted,
        "updated": updated,
        "unchanged": distinct - inserted - updated,
        "superseded": valid - distinct,
    }
