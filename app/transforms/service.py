"""Transforms: an import's staged text cast into a dataset's reference table for its customer.

One job: the staged text is cast and checked once, batch by batch on a few connections at once
(reporting progress), into the attempt's table of typed rows; then, in one transaction on the
data engine, the refused rows are written to `workspace.transform_errors` with their reasons,
one upsert takes the valid ones, the typed table is dropped and the fenced publish commits.
Readers of `reference` see the whole transform or none of it.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, func, select, text

from app.datasets import DATASETS
from app.datasets.base import Dataset
from app.db.session import BackofficeSession
from app.errors import APIError
from app.jobs import queue
from app.jobs.runner import JobContext, JobFailed
from app.models.data.workspace import ImportBatch, Transform, TransformError
from app.transforms.sql import Plan

BATCH = 250_000  # rows cast per statement (one progress step)
# A preview casts this many rows at most, in the request that asks (docs/DATASETS.md), and
# lists the refused values of the first PREVIEW_REJECTS refused rows.
PREVIEW_ROWS = 10_000
PREVIEW_REJECTS = 20
COUNTS = ("inserted", "updated", "unchanged", "rejected", "superseded")


def normalize(name: str) -> str:
    """Header matching ignores case, spaces, dashes and underscores."""
    return re.sub(r"[\s_\-]+", "", name.lower())


def by_name(dataset: Dataset, header: list[str]) -> dict[str, str]:
    """The default mapping: each column takes the first header of the same normalized name."""
    by_normal: dict[str, str] = {}
    for head in header:
        by_normal.setdefault(normalize(head), head)
    return {
        f.name: by_normal[normalize(f.name)]
        for f in dataset.fields
        if normalize(f.name) in by_normal
    }


def likely_dataset(header: list[str]) -> Dataset:
    """The dataset whose columns the most headers match (the first declared on a tie)."""
    return max(DATASETS.values(), key=lambda d: len(by_name(d, header)))


def resolve_mapping(
    dataset_name: object, header: list[str], explicit: object, *, match_names: bool = True
) -> tuple[dict[str, str], list[str]]:
    """(field -> header name, extra headers). Refuses unknown fields or headers, and required
    fields that nothing maps, naming them, before any work starts. `match_names=False`: the
    explicit mapping is the whole mapping (a form that lists every column, some left unmapped
    on purpose)."""
    dataset = DATASETS.get(dataset_name) if isinstance(dataset_name, str) else None
    if dataset is None:
        raise APIError(
            f"unknown dataset {dataset_name!r}; known: {', '.join(DATASETS)}",
            code="unknown_dataset",
            status=422,
        )
    fields = {f.name for f in dataset.fields}
    mapping: dict[str, str] = {}
    if explicit is not None:
        if not isinstance(explicit, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in explicit.items()
        ):
            raise APIError(
                "mapping must be an object of column: header", code="invalid_field", status=422
            )
        for field, head in explicit.items():
            if field not in fields:
                raise APIError(
                    f"mapping names {field!r}, which is not a column of {dataset.name}",
                    code="invalid_mapping",
                    status=422,
                )
            if head not in header:
                raise APIError(
                    f"mapping names header {head!r}, which the file does not have",
                    code="invalid_mapping",
                    status=422,
                )
            mapping[field] = head
    if match_names:
        for name, head in by_name(dataset, header).items():
            mapping.setdefault(name, head)
    missing = [f.name for f in dataset.fields if f.required and f.name not in mapping]
    if missing:
        raise APIError(
            f"required column(s) {', '.join(missing)} of {dataset.name} match no header of the "
            f"file ({', '.join(header)}); map them with column=header",
            code="unmapped_columns",
            status=422,
        )
    used = set(mapping.values())
    return mapping, [h for h in header if h not in used]


def _checked(
    session: BackofficeSession,
    references,
    *,
    import_id: object,
    dataset: object,
    mapping: object,
    max_rejects: object,
    match_names: bool,
) -> tuple[ImportBatch, dict[str, str], list[str]]:
    """What a transform and its preview both refuse before any work: (the staged import, the
    mapping, the extra headers)."""
    if not isinstance(import_id, int) or isinstance(import_id, bool):
        raise APIError("import_id must be a whole number", code="invalid_field", status=422)
    if max_rejects is not None and (
        not isinstance(max_rejects, int)
        or isinstance(max_rejects, bool)
        or not 0 <= max_rejects < 2**63  # a bigint column
    ):
        raise APIError(
            "max_rejects must be a whole number of at least 0", code="invalid_field", status=422
        )
    batch = session.get_or_404(ImportBatch, import_id, "import")
    if batch.status != "staged":
        raise APIError(
            f"import {import_id} is {batch.status}, not staged", code="not_staged", status=409
        )
    references.customer(session, batch.customer_id)
    resolved, extra = resolve_mapping(dataset, batch.header or [], mapping, match_names=match_names)
    return batch, resolved, extra


def create(
    session: BackofficeSession,
    references,
    *,
    import_id: object,
    dataset: object,
    mapping: object = None,
    max_rejects: object = None,
    created_by: int | None,
    max_attempts: int = 3,
    match_names: bool = True,
) -> Transform:
    batch, resolved, extra = _checked(
        session,
        references,
        import_id=import_id,
        dataset=dataset,
        mapping=mapping,
        max_rejects=max_rejects,
        match_names=match_names,
    )
    transform = Transform(
        import_id=batch.id,
        dataset=dataset,
        customer_id=batch.customer_id,
        created_by=created_by,
        mapping=resolved,
        extra_headers=extra,
        max_rejects=max_rejects,
    )
    session.add(transform)
    session.flush()
    job = queue.enqueue(
        session,
        "transform",
        {"transform_id": transform.id},
        customer_id=batch.customer_id,
        created_by=created_by,
        max_attempts=max_attempts,
    )
    transform.job_id = job.id
    session.flush()
    return transform


@dataclass
class Preview:
    """What a transform of the first `rows` staged rows would do, and its first refusals."""

    import_id: int
    dataset: str
    mapping: dict[str, str]
    extra_headers: list[str]
    rows: int  # staged rows previewed
    rows_staged: int
    counts: dict[str, int]
    rejects: list[dict[str, Any]]  # line, column, value, reason of the first rejected rows
    max_rejects: int | None

    @property
    def complete(self) -> bool:
        return self.rows >= self.rows_staged

    @property
    def over_max_rejects(self) -> bool:
        return self.max_rejects is not None and self.counts["rejected"] > self.max_rejects

    def as_dict(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "dataset": self.dataset,
            "mapping": self.mapping,
            "extra_headers": self.extra_headers,
            "rows_previewed": self.rows,
            "rows_staged": self.rows_staged,
            "complete": self.complete,
            **self.counts,
            "over_max_rejects": self.over_max_rejects,
            "rejects": self.rejects,
        }


def preview(
    session: BackofficeSession,
    references,
    *,
    import_id: object,
    dataset: object,
    mapping: object = None,
    max_rejects: object = None,
    match_names: bool = True,
) -> Preview:
    """A dry run: the transform's own cast, checks and counting of the first PREVIEW_ROWS
    staged rows, in a savepoint that is rolled back. Nothing is written anywhere: the cast rows
    go to a temporary table dropped with the savepoint, and the upsert's outcome is counted
    against the stored rows instead of being run."""
    batch, resolved, extra = _checked(
        session,
        references,
        import_id=import_id,
        dataset=dataset,
        mapping=mapping,
        max_rejects=max_rejects,
        match_names=match_names,
    )
    total = batch.rows_staged or 0
    rows = min(total, PREVIEW_ROWS)
    plan = _plan(batch, DATASETS[dataset], resolved, f"preview_{batch.id}", temporary=True)
    conn = session.connection_for("data")
    refusal = server_refusal(conn)
    if refusal:
        raise APIError(refusal, code="unsupported_server", status=503)
    cursor = conn.connection.dbapi_connection.cursor()
    cursor.execute("SAVEPOINT preview")
    try:
        cursor.execute("SET LOCAL timezone = 'UTC'")  # undone with the savepoint
        cursor.execute(plan.typed_table())
        rejected = cursor.execute(plan.cast_batch(), (0, rows)).fetchone()[0]
        inserted, updated, distinct = cursor.execute(plan.would_write(batch.customer_id)).fetchone()
        rejects = [
            {"line": line, "column": column, "value": value, "reason": reason}
            for line, column, value, reason in cursor.execute(plan.refusals(PREVIEW_REJECTS))
        ]
    finally:
        cursor.execute("ROLLBACK TO SAVEPOINT preview")
        cursor.execute("RELEASE SAVEPOINT preview")
    return Preview(
        import_id=batch.id,
        dataset=dataset,
        mapping=resolved,
        extra_headers=extra,
        rows=rows,
        rows_staged=total,
        counts={
            "inserted": inserted,
            "updated": updated,
            "unchanged": distinct - inserted - updated,
            "rejected": rejected,
            "superseded": rows - rejected - distinct,
        },
        rejects=rejects,
        max_rejects=max_rejects,
    )


def _plan(
    batch, dataset: Dataset, mapping: dict[str, str], typed: str, *, temporary: bool = False
) -> Plan:
    header = batch.header or []
    return Plan(
        dataset,
        f"import_{batch.id}",
        {f: header.index(h) + 1 for f, h in mapping.items()},
        typed=typed,
        temporary=temporary,
    )


def server_refusal(conn: Connection, *, counting: bool = False) -> str | None:
    """Why the data server cannot run a transform, or None. `counting`: the real run counts
    its inserts with the server's statistics; a preview does not."""
    if int(conn.execute(text("SHOW server_version_num")).scalar()) < 160000:
        return "transforms need PostgreSQL 16 or newer on the data engine"
    if counting and not conn.execute(text("SELECT current_setting('track_counts')::bool")).scalar():
        return (
            "transforms count inserted rows with the server's statistics: set "
            "track_counts = on on the data engine (autovacuum needs it too)"
        )
    return None


def get(session: BackofficeSession, transform_id: int) -> Transform:
    return session.get_or_404(Transform, transform_id, "transform")


def of_import(session: BackofficeSession, import_id: int) -> list[Transform]:
    """An import's transforms, newest first."""
    query = select(Transform).where(Transform.import_id == import_id)
    return list(session.scalars(query.order_by(Transform.id.desc())))


def errors_of_import(
    session: BackofficeSession, import_id: int, *, offset: int, limit: int
) -> tuple[list[TransformError], int]:
    return _errors(
        session,
        TransformError.import_id == import_id,
        TransformError.transform_id.desc(),
        offset=offset,
        limit=limit,
    )


def errors_of_transform(
    session: BackofficeSession, transform_id: int, *, offset: int, limit: int
) -> tuple[list[TransformError], int]:
    return _errors(session, TransformError.transform_id == transform_id, offset=offset, limit=limit)


def _errors(session, where, *order, offset: int, limit: int) -> tuple[list[TransformError], int]:
    query = select(TransformError).where(where)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(*order, TransformError.line, TransformError.id).offset(offset).limit(limit)
    )
    return list(rows), total


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
            t = conn.execute(select(Transform.__table__).where(Transform.id == transform_id)).one()
            if t.status == "succeeded":  # a retry after a publish that did commit
                result = {"transform_id": t.id, **t.counts}
                ctx.publish(conn, result)
                return result
            batch = conn.execute(
                select(ImportBatch.__table__).where(ImportBatch.id == t.import_id)
            ).one()
            refusal = server_refusal(conn, counting=True)
            if refusal:
                raise JobFailed(refusal)
        plan = _plan(
            batch, DATASETS[t.dataset], t.mapping, f"transform_{t.id}_a{ctx.claim.attempt}"
        )
        total = batch.rows_staged or 0
        rejected = self._cast(ctx, plan, t.id, total)
        with ctx.data_transaction() as conn:
            conn.execute(text("SET LOCAL timezone = 'UTC'"))
            conn.execute(text("SET LOCAL work_mem = '64MB'"))
            cursor = conn.connection.dbapi_connection.cursor()
            if rejected:
                cursor.execute(plan.reject(t.id, batch.id))
            counts = {"rejected": rejected}
            if t.max_rejects is not None and rejected > t.max_rejects:
                counts.update(inserted=0, updated=0, unchanged=0, superseded=0)
                drop_typed_tables(conn, t.id)
                return self._refuse(ctx, conn, t, counts)
            counts.update(self._upsert(cursor, plan, t, batch, total - rejected))
            drop_typed_tables(conn, t.id)  # with the publish: a retry finds it, or nothing
            result = {"transform_id": t.id, **counts, "extra_headers": t.extra_headers}
            conn.execute(
                text(
                    "UPDATE workspace.transforms SET status = 'succeeded', "
                    "counts = CAST(:counts AS jsonb), finished_at = clock_timestamp() "
                    "WHERE id = :id"
                ),
                {"counts": json.dumps({k: counts[k] for k in COUNTS}), "id": t.id},
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

    def _upsert(self, cursor, plan: Plan, t, batch, valid: int) -> dict[str, int]:
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
                plan.upsert(t.customer_id, batch.id, deduplicate=False)
            ).rowcount
            distinct = valid
        except psycopg.errors.CardinalityViolation:
            cursor.execute("ROLLBACK TO SAVEPOINT upsert")
            before = cursor.execute(counts).fetchone()  # the rolled-back tries count too
            written = cursor.execute(
                plan.upsert(t.customer_id, batch.id, deduplicate=True)
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

    def _refuse(self, ctx: JobContext, conn: Connection, t, counts: dict) -> dict[str, Any]:
        """Over the reject limit: nothing published, the errors kept for reading."""
        message = (
            f"{counts['rejected']} rows rejected, more than the limit of "
            f"{t.max_rejects}; nothing was published"
        )
        conn.execute(
            text(
                "UPDATE workspace.transforms SET status = 'failed', error = :error, "
                "counts = CAST(:counts AS jsonb), finished_at = clock_timestamp() "
                "WHERE id = :id"
            ),
            {"error": message, "counts": json.dumps(counts), "id": t.id},
        )
        result = {"transform_id": t.id, **counts}
        ctx.publish(conn, result, status="failed")
        conn.execute(
            text("UPDATE workspace.jobs SET error = :e WHERE id = :id"),
            {"e": message, "id": ctx.claim.job_id},
        )
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
