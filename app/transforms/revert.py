"""Reverting a transform: the rows it touched put back exactly as they were before it, in one
job published in one transaction, or refused with the later transforms that stand in the way.

A revert is a transform record of its own (`reverts_id`), run as a transform job, and it keeps
history like any transform, so it can be reverted in turn. For a transform X, from X's history
rows (`reference.<dataset>_history` with `transform_id` X):

- `update` rows hold the version X replaced: it is written back;
- rows stamped X with no such row are the ones X inserted: they are deleted (the triggers keep
  them, under the revert, as `delete`);
- `delete` rows (X was a revert that removed them) are inserted again, and recorded as
  `insert` under the revert (inserts have no trigger);
- `insert` rows (X was a revert that put them back) are deleted.

A restored version keeps its own stamp (`source_transform_id`), import and time: afterwards the
customer's rows are the same, column for column, as before X. Refused (409 `revert_conflict`,
naming them) when a row X touched is no longer as X left it: a later transform changed it and
still stands. Reverting those first, newest first, makes X revertible again.
"""

from __future__ import annotations

import json
from typing import Any

from psycopg import sql
from sqlalchemy import Connection, select, text

from app.datasets import DATASETS
from app.datasets.base import Dataset
from app.db.session import BackofficeSession
from app.errors import Refused
from app.jobs import queue
from app.jobs.runner import JobContext, JobFailed
from app.models.data.workspace import Transform
from app.transforms.history import row_columns, same_key, writing

REVERT_COUNTS = ("restored", "deleted", "reinserted")


def create(
    session: BackofficeSession,
    *,
    transform_id: int,
    history_days: int,
    created_by: int | None,
    max_attempts: int = 3,
) -> Transform:
    """The revert of a published transform, queued; refused when it cannot be done."""
    target = session.get_or_404(Transform, transform_id, "transform")
    refuse_unless_revertible(session, target, history_days)
    revert = Transform(
        import_id=target.import_id,
        dataset=target.dataset,
        customer_id=target.customer_id,
        created_by=created_by,
        mapping={},
        extra_headers=[],
        reverts_id=target.id,
    )
    session.add(revert)
    session.flush()
    queue.enqueue_for(
        session, revert, "transform", {"transform_id": revert.id}, max_attempts=max_attempts
    )
    return revert


def refuse_unless_revertible(session: BackofficeSession, target: Transform, days: int) -> None:
    """Why `target` cannot be reverted now, as a refusal; nothing when it can."""
    if target.status != "succeeded":
        raise Refused(
            f"transform {target.id} is {target.status}: only a published transform can be reverted",
            code="not_revertible",
            status=409,
        )
    if not target.keeps_history:
        raise Refused(
            f"transform {target.id} was published before transforms kept history: it cannot "
            "be reverted",
            code="not_revertible",
            status=409,
        )
    if target.reverted_by_id is not None:
        raise Refused(
            f"transform {target.id} was already reverted by transform {target.reverted_by_id}",
            code="already_reverted",
            status=409,
        )
    pending = session.scalar(
        select(Transform.id).where(Transform.reverts_id == target.id, Transform.status == "pending")
    )
    if pending:
        raise Refused(
            f"transform {pending} is already reverting transform {target.id}",
            code="already_reverted",
            status=409,
        )
    conn = session.connection_for("data")
    expired = conn.execute(
        text("SELECT CAST(:at AS timestamptz) < now() - make_interval(days => :days)"),
        {"at": target.finished_at, "days": days},
    ).scalar()
    if expired:
        raise Refused(
            f"transform {target.id} is older than the {days} days its history is kept "
            "(TRANSFORM_HISTORY_DAYS): it can no longer be reverted",
            code="history_expired",
            status=409,
        )
    conflicts = conflicting(conn, target)
    if conflicts:
        raise Refused(conflict_message(target.id, conflicts), code="revert_conflict", status=409)


def conflict_message(transform_id: int, conflicts: list[int]) -> str:
    named = ", ".join(f"#{n}" for n in conflicts)
    return (
        f"later transform(s) {named} changed rows that transform {transform_id} wrote: revert "
        "them first, newest first"
    )


def revertible_rows(target: Transform) -> int:
    """How many rows a revert of `target` puts back (for the confirmation): what it wrote, from
    its counts, without reading the rows."""
    counts = target.counts or {}
    names = REVERT_COUNTS if target.reverts_id else ("inserted", "updated")
    return sum(counts.get(name, 0) for name in names)


# -- what stands in the way -------------------------------------------------------------------


def conflicting(conn: Connection, target: Transform) -> list[int]:
    """The later transforms whose changes stand on rows `target` touched, newest first; empty
    when every such row is still as `target` left it."""
    d = DATASETS[target.dataset]
    cursor = conn.connection.dbapi_connection.cursor()
    revert = target.reverts_id is not None
    statement = _conflicts_of_revert(d) if revert else _conflicts_of_transform(d)
    found = cursor.execute(
        statement,
        {"x": target.id, "c": target.customer_id, "t": target.reverts_id, "d": target.dataset},
    ).fetchall()
    return sorted({n for (n,) in found if n is not None}, reverse=True)


def _conflicts_of_transform(d: Dataset) -> sql.Composable:
    """X wrote its rows with its stamp: every row X touched (its history, and later history
    of versions stamped X) must still be stamped X. Names the stamp that stands instead, or
    the revert that removed the row."""
    table = sql.Identifier("reference", d.name)
    history = sql.Identifier("reference", f"{d.name}_history")
    return sql.SQL(
        "WITH later AS (SELECT id FROM workspace.transforms WHERE customer_id = %(c)s "
        "AND dataset = %(d)s AND id <> %(x)s AND status = 'succeeded' "
        "AND finished_at >= (SELECT finished_at FROM workspace.transforms WHERE id = %(x)s)), "
        "touched AS (SELECT h.* FROM {history} h WHERE h.transform_id = %(x)s "
        "UNION ALL SELECT h.* FROM {history} h WHERE h.transform_id IN (SELECT id FROM later) "
        "AND h.source_transform_id = %(x)s) "
        "SELECT DISTINCT coalesce(t.source_transform_id, h.transform_id) FROM touched h "
        "LEFT JOIN {table} t ON t.customer_id = %(c)s AND {same} "
        "WHERE t.source_transform_id IS DISTINCT FROM %(x)s"
    ).format(history=history, table=table, same=same_key(d, "t", "h"))


def _conflicts_of_revert(d: Dataset) -> sql.Composable:
    """X reverted T: every row X touched must still be as T found it (T's history: the
    version T replaced, stamped as it was; absent where T inserted it). Names what stands."""
    table = sql.Identifier("reference", d.name)
    history = sql.Identifier("reference", f"{d.name}_history")
    return sql.SQL(
        "SELECT DISTINCT coalesce(t.source_transform_id, x.transform_id) "
        "FROM {history} x "
        "LEFT JOIN {history} b ON b.transform_id = %(t)s AND {same_b} "
        "LEFT JOIN {table} t ON t.customer_id = %(c)s AND {same_t} "
        "WHERE x.transform_id = %(x)s AND CASE "
        "  WHEN x.op = 'delete' THEN t.customer_id IS NOT NULL "
        "  ELSE t.customer_id IS NULL "
        "    OR t.source_transform_id IS DISTINCT FROM b.source_transform_id "
        "END"
    ).format(
        history=history,
        table=table,
        same_b=same_key(d, "b", "x"),
        same_t=same_key(d, "t", "x"),
    )


# -- the job ------------------------------------------------------------------------------


def run(ctx: JobContext, revert_id: int) -> dict[str, Any]:
    """The revert's attempt: checked again and written in the one publishing transaction."""
    with ctx.data_transaction() as conn:
        revert = conn.execute(select(Transform.__table__).where(Transform.id == revert_id)).one()
        if revert.status == "succeeded":  # a retry after a publish that did commit
            result = {"transform_id": revert.id, **revert.counts}
            ctx.publish(conn, result)
            return result
        target = conn.execute(
            select(Transform.__table__).where(Transform.id == revert.reverts_id)
        ).one()
        writing(conn, revert)  # after any transform of these rows that is still publishing
        conn.execute(text("SET LOCAL timezone = 'UTC'"))
        if target.reverted_by_id is not None:
            raise JobFailed(
                f"transform {target.id} was already reverted by transform {target.reverted_by_id}"
            )
        conflicts = conflicting(conn, target)
        if conflicts:
            raise JobFailed(conflict_message(target.id, conflicts))
        counts = restore(conn, DATASETS[target.dataset], target, revert.id)
        ctx.check()
        conn.execute(
            text(
                "UPDATE workspace.transforms SET status = 'succeeded', "
                "counts = CAST(:counts AS jsonb), finished_at = clock_timestamp() WHERE id = :id"
            ),
            {"counts": json.dumps(counts), "id": revert.id},
        )
        conn.execute(
            text("UPDATE workspace.transforms SET reverted_by_id = :r WHERE id = :x"),
            {"r": revert.id, "x": target.id},
        )
        if target.reverts_id is not None:  # what the target had undone stands again
            conn.execute(
                text("UPDATE workspace.transforms SET reverted_by_id = NULL WHERE id = :t"),
                {"t": target.reverts_id},
            )
        result = {"transform_id": revert.id, "reverts_id": target.id, **counts}
        ctx.publish(conn, result)
    return result


def restore(conn: Connection, d: Dataset, target: Any, revert_id: int) -> dict[str, int]:
    """Put back what `target` replaced, in one transaction that the triggers record under the
    revert; the counts of rows restored, deleted and put back."""
    cursor = conn.connection.dbapi_connection.cursor()
    table = sql.Identifier("reference", d.name)
    history = sql.Identifier("reference", f"{d.name}_history")
    columns = row_columns(d)
    written = [c for c in columns if c != "customer_id" and c not in d.key]
    params = {"x": target.id, "c": target.customer_id, "r": revert_id}
    restored = cursor.execute(
        sql.SQL(
            "UPDATE {table} t SET ({cols}) = ({hcols}) FROM {history} h "
            "WHERE h.transform_id = %(x)s AND h.op = 'update' AND t.customer_id = %(c)s AND {same}"
        ).format(
            table=table,
            history=history,
            cols=sql.SQL(", ").join(map(sql.Identifier, written)),
            hcols=sql.SQL(", ").join(sql.Identifier("h", c) for c in written),
            same=same_key(d, "t", "h"),
        ),
        params,
    ).rowcount
    deleted = 0
    if target.reverts_id is None:  # its own inserts: still stamped with it, once restored
        deleted += cursor.execute(
            sql.SQL(
                "DELETE FROM {table} WHERE customer_id = %(c)s AND source_transform_id = %(x)s"
            ).format(table=table),
            params,
        ).rowcount
    deleted += cursor.execute(
        sql.SQL(
            "DELETE FROM {table} t USING {history} h WHERE h.transform_id = %(x)s "
            "AND h.op = 'insert' AND t.customer_id = %(c)s AND {same}"
        ).format(table=table, history=history, same=same_key(d, "t", "h")),
        params,
    ).rowcount
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    reinserted = cursor.execute(
        sql.SQL(
            "WITH back AS (INSERT INTO {table} ({names}) SELECT {names} FROM {history} "
            "WHERE transform_id = %(x)s AND op = 'delete' RETURNING {names}) "
            "INSERT INTO {history} (transform_id, op, {names}) "
            "SELECT %(r)s, 'insert', {names} FROM back"
        ).format(table=table, history=history, names=names),
        params,
    ).rowcount
    return {"restored": restored, "deleted": deleted, "reinserted": reinserted}
