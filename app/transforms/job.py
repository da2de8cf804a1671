"""The transform job: an import's staged text cast into a dataset's reference table.

The staged text is cast and checked once, batch by batch on a few connections at once
(reporting progress), into the attempt's table of typed rows; then, in one transaction on the
data engine, the refused rows are written to `workspace.transform_errors` with their reasons,
one upsert takes the valid ones, the typed table is dropped and the fenced publish commits.
Readers of `reference` see the whole transform or none of it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
from sqlalchemy import Connection, select, text

from app.datasets import DATASETS
from app.imports.staged import LOST, lost_in_a_crash
from app.jobs.runner import JobContext, JobFailed
from app.models.data.workspace import ImportBatch, Transform
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
        rejected = self._cast(ctx, plan, transform.id, total)
        with ctx.data_transaction() as conn:
            conn.execute(text("SET LOCAL timezone = 'UTC'"))
            conn.execute(text("SET LOCAL work_mem = '64MB'"))
            cursor = conn.connection.dbapi_connection.cursor()
            if rejected:
                cursor.execute(plan.reject(transform.id, batch.id))
            counts = {"rejected": rejected}
            if transform.max_rejects is not None and rejected > transform.max_rejects:
                counts.update(inserted=0, updated=0, unchanged=0, superseded=0)
                drop_typed_tables(conn, transform.id)
                return self._refuse(ctx, conn, transform, counts)
            counts.update(self._upsert(cursor, plan, transform, batch, total - rejected))
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

    def _cast(self, ctx: JobContext, plan: Plan, transform_id: int, total: int) -> int:
        """Cast and check every staged row into the attempt's typed table, batch by batch, on
        up to TRANSFORM_CONNECTIONS connections at once (the casts are the transform's CPU
        work, and one statement uses one core of the data server). Each batch commits on its
        own: the table is the attempt's alone, and the publish drops it. Returns how many
        rows were refused."""
        with ctx.data_transaction() as conn:
            drop_typed_tables(conn, transform_id)  # what earlier attempts left
            conn.connection.dbapi_connection.cursor().execute(plan.typed_table())
        statement = plan.cast_batch()
        lows = iter(range(0, max(total, 1), BATCH))
        lock = threading.Lock()
        done = refused = 0
        failures: list[BaseException] = []

        def cast_some() -> None:
            nonlocal done, refused
            try:
                with ctx.data_connection() as conn:
                    cursor = conn.connection.dbapi_connection.cursor()
                    while not failures:
                        with lock:
                            low = next(lows, None)
                        if low is None:
                            return
                        ctx.check()
                        with conn.begin():
                            conn.execute(text("SET LOCAL timezone = 'UTC'"))
                            bad = cursor.execute(statement, (low, low + BATCH)).fetchone()[0]
                        with lock:
                            refused += bad
                            done += min(BATCH, total - low)
                            ctx.report(done, total, "rows")
            except BaseException as exc:  # handed to the job's thread, which raises it
                failures.append(exc)
                ctx.interrupt()  # the other connections stop too

        connections = min(ctx.backoffice.settings.transform_connections, -(-total // BATCH))
        threads = [threading.Thread(target=cast_some) for _ in range(max(connections, 1) - 1)]
        for thread in threads:
            thread.start()
        cast_some()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return refused

    def _upsert(self, cursor, plan: Plan, transform, batch, valid: int) -> dict[str, int]:
        """Without sorting when the file has no repeated key (the usual case); when it has,
        PostgreSQL says so and the last row of each key is kept instead.

        Counted without RETURNING (a million returned rows would be kept to be counted) and
        without counting the customer's rows before and after (seconds at 11M rows): new keys
        are the server's own count of this transaction's inserts into the table, read around
        the statement; the rest of its row count are updates."""
        counts = plan.write_counts()
        cursor.execute("SAVEPOINT upsert")
        try:
            before = cursor.execute(counts).fetchone()
            written = cursor.execute(
                plan.upsert(transform.customer_id, batch.id, deduplicate=False)
            ).rowcount
            distinct = valid
        except psycopg.errors.CardinalityViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT upsert")
            before = cursor.execute(counts).fetchone()  # the rolled-back tries count too
            written = cursor.execute(
                plan.upsert(transform.customer_id, batch.id, deduplicate=True)
            ).rowcount
            distinct = cursor.execute(plan.distinct_valid()).fetchone()[0]
        after = cursor.execute(counts).fetchone()
        cursor.execute("RELEASE SAVEPOINT upsert")
        inserted = after[0] - before[0]
        updated = written - inserted
        return {
            "inserted": inserted,
            "updated": updated,
            "unchanged": distinct - inserted - updated,
            "superseded": valid - distinct,
        }

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
