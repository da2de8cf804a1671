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
    references,
    *,
    transform_id: int,
    history_days: int,
    created_by: int | None,
    max_attempts: int = 3,
) -> Transform:
    """The revert of a published transform, queued; refused when it cannot be done."""
    target = session.get_or_404(Transform, transform_id, "transform")
    references.customer(session, target.customer_id)  # active: a purge refuses new work
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
    if _expired(conn, target, days):
        raise Refused(
            f"transform {target.id} is older than the {days} days its history is kept "
            "(TRANSFORM_HISTORY_DAYS): it can no longer be reverted",
            code="history_expired",
            status=409,
        )
    conflicts = conflicting(conn, target)
    if conflicts:
        raise Refused(conflict_message(target.id, conflicts), code="revert_conflict", status=409)


def revertible_rows(target: Transform) -> int:
    """How many rows a revert of `target` puts back (for the confirmation): what it wrote, from
    its counts, without reading the rows."""
    counts = target.counts or {}
    names = REVERT_COUNTS if target.reverts_id else ("inserted", "updated")
    return sum(counts.get(name, 0) for name in names)


# -- what stands in the way -------------------------------------------------------------------


def conflicting(conn: Connection, target: Any) -> list[int | None]:
    """For each row `target` touched that is no longer as it left it, the latest transform
    (published after it) that touched that row: the ones to revert first, newest first. None
    stands for a row whose later writer is unknown (its history pruned). Empty: no conflict."""
    d = DATASETS[target.dataset]
    bad = _changed_since_transform(d) if target.reverts_id is None else _changed_since_revert(d)
    rows = conn.connection.dbapi_connection.cursor().execute(
        _latest_writers(d, bad),
        {"x": target.id, "c": target.customer_id, "t": target.reverts_id, "d": target.dataset},
    )
    found = {n for (n,) in rows}
    return sorted(found - {None}, reverse=True) + ([None] if None in found else [])


def conflict_message(transform_id: int, conflicts: list[int | None]) -> str:
    named = ", ".join(f"#{n}" for n in conflicts if n is not None)
    if not named:
        return (
            f"rows that transform {transform_id} wrote have changed since, and the history "
            "of what changed them is no longer kept: it cannot be reverted"
        )
    return (
        f"later transform(s) {named} changed rows that transform {transform_id} wrote: revert "
        "them first, newest first"
    )


# The transforms of the same customer and dataset published after X.
LATER = (
    "later AS (SELECT id, finished_at FROM workspace.transforms WHERE customer_id = %(c)s "
    "AND dataset = %(d)s AND id <> %(x)s AND status = 'succeeded' "
    "AND finished_at >= (SELECT finished_at FROM workspace.transforms WHERE id = %(x)s))"
)


def _changed_since_transform(d: Dataset) -> sql.Composable:
    """`bad`: the keys of the rows X (a transform) wrote that no longer carry its stamp. X
    touched its history's rows, and rows whose version stamped X a later history holds."""
    table, history = _tables(d)
    return sql.SQL(
        "touched AS (SELECT h.* FROM {history} h WHERE h.transform_id = %(x)s "
        "UNION ALL SELECT h.* FROM {history} h WHERE h.transform_id IN (SELECT id FROM later) "
        "AND h.source_transform_id = %(x)s), "
        "bad AS (SELECT DISTINCT {keys}, t.source_transform_id AS stamp FROM touched h "
        "LEFT JOIN {table} t ON t.customer_id = %(c)s AND {same} "
        "WHERE t.source_transform_id IS DISTINCT FROM %(x)s)"
    ).format(history=history, table=table, same=same_key(d, "t", "h"), keys=_keys(d, "h"))


def _changed_since_revert(d: Dataset) -> sql.Composable:
    """`bad`: the keys of the rows X (the revert of T) touched that are no longer as X left
    them: as T found them (T's history: the version T replaced, with its stamp), or absent."""
    table, history = _tables(d)
    return sql.SQL(
        "bad AS (SELECT DISTINCT {keys}, t.source_transform_id AS stamp FROM {history} x "
        "LEFT JOIN {history} b ON b.transform_id = %(t)s AND {same_b} "
        "LEFT JOIN {table} t ON t.customer_id = %(c)s AND {same_t} "
        "WHERE x.transform_id = %(x)s AND CASE "
        "  WHEN x.op = 'delete' THEN t.customer_id IS NOT NULL "
        "  ELSE t.customer_id IS NULL "
        "    OR t.source_transform_id IS DISTINCT FROM b.source_transform_id "
        "END)"
    ).format(
        history=history,
        table=table,
        same_b=same_key(d, "b", "x"),
        same_t=same_key(d, "t", "x"),
        keys=_keys(d, "x"),
    )


def _latest_writers(d: Dataset, bad: sql.Composable) -> sql.Composable:
    """Per key of `bad`, the transform published after X that touched it last: one whose
    history holds the key, or whose stamp the row carries now (it inserted or wrote it)."""
    _table, history = _tables(d)
    key = sql.SQL(", ").join(sql.Identifier("b", k) for k in d.key)
    return sql.SQL(
        "WITH {later}, {bad}, who AS ("
        "SELECT {key}, l.id, l.finished_at FROM bad b JOIN {history} h "
        "ON h.customer_id = %(c)s AND {same} JOIN later l ON l.id = h.transform_id "
        "UNION ALL SELECT {key}, l.id, l.finished_at FROM bad b JOIN later l ON l.id = b.stamp "
        "UNION ALL SELECT {key}, NULL, '-infinity' FROM bad b) "
        "SELECT DISTINCT ON ({plain}) id FROM who b "
        "ORDER BY {plain}, finished_at DESC, id DESC NULLS LAST"
    ).format(
        later=sql.SQL(LATER),
        bad=bad,
        history=history,
        key=key,
        same=same_key(d, "h", "b"),
        plain=key,
    )


def _tables(d: Dataset) -> tuple[sql.Composable, sql.Composable]:
    """The dataset's table and its history table."""
    return sql.Identifier("reference", d.name), sql.Identifier("reference", f"{d.name}_history")


def _keys(d: Dataset, alias: str) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(alias, k) for k in d.key)


# -- the job ------------------------------------------------------------------------------


def run(ctx: JobContext, revert_id: int) -> dict[str, Any]:
    """The revert's attempt: checked again under the lock and written in the one publishing
    transaction."""
    with ctx.data_transaction() as conn:
        revert = conn.execute(select(Transform.__table__).where(Transform.id == revert_id)).one()
        if revert.status == "succeeded":  # a retry after a publish that did commit
            result = {"transform_id": revert.id, **revert.counts}
            ctx.publish(conn, result)
            return result
        writing(conn, revert)  # after any transform of these rows that is still publishing
        target = conn.execute(
            select(Transform.__table__).where(Transform.id == revert.reverts_id).with_for_update()
        ).one()
        conn.execute(text("SET LOCAL timezone = 'UTC'"))
        refusal = _refusal(conn, target, ctx.backoffice.settings.transform_history_days)
        if refusal:
            raise JobFailed(refusal)
        counts = restore(conn, DATASETS[target.dataset], target, revert.id)
        ctx.check()
        conn.execute(
            text(
                "UPDATE workspace.transforms SET status = 'succeeded', "
                "counts = CAST(:counts AS jsonb), finished_at = clock_timestamp() WHERE id = :id"
            ),
            {"counts": json.dumps(counts), "id": revert.id},
        )
        _relink(conn, target, revert.id)
        result = {"transform_id": revert.id, "reverts_id": target.id, **counts}
        ctx.publish(conn, result)
    return result


def _refusal(conn: Connection, target: Any, days: int) -> str | None:
    """Why the revert cannot run now, read under the lock: reverted meanwhile, past retention,
    its history incomplete (a prune got to it), or later changes standing on its rows."""
    if target.reverted_by_id is not None:
        return f"transform {target.id} was already reverted by transform {target.reverted_by_id}"
    if _expired(conn, target, days):
        return f"transform {target.id} is older than the {days} days its history is kept"
    d = DATASETS[target.dataset]
    kept = conn.execute(
        text(
            f"SELECT count(*) FILTER (WHERE op = 'update'), count(*) "
            f"FROM reference.{d.name}_history WHERE transform_id = :x"
        ),
        {"x": target.id},
    ).one()
    counts = target.counts or {}
    complete = (
        kept[1] == sum(counts.get(n, 0) for n in REVERT_COUNTS)
        if target.reverts_id
        else kept[0] == counts.get("updated", 0)
    )
    if not complete:
        return f"the history of transform {target.id} is no longer complete: it cannot be reverted"
    conflicts = conflicting(conn, target)
    return conflict_message(target.id, conflicts) if conflicts else None


def _relink(conn: Connection, target: Any, revert_id: int) -> None:
    """Which transforms stand once the revert is published: the target is reverted; if it was
    a revert, what it had undone stands again, and if that was a revert too, what that one
    undid is undone again."""
    links = [(target.id, revert_id)]
    if target.reverts_id is not None:
        links.append((target.reverts_id, None))
        undone = conn.execute(
            text("SELECT reverts_id FROM workspace.transforms WHERE id = :t"),
            {"t": target.reverts_id},
        ).scalar()
        if undone is not None:
            links.append((undone, target.reverts_id))
    for transform_id, reverted_by in links:
        conn.execute(
            text("UPDATE workspace.transforms SET reverted_by_id = :r WHERE id = :x"),
            {"r": reverted_by, "x": transform_id},
        )


def _expired(conn: Connection, target: Any, days: int) -> bool:
    return bool(
        conn.execute(
            text("SELECT CAST(:at AS timestamptz) < now() - make_interval(days => :days)"),
            {"at": target.finished_at, "days": days},
        ).scalar()
    )


def restore(conn: Connection, d: Dataset, target: Any, revert_id: int) -> dict[str, int]:
    """Put back what `target` replaced, in one transaction that the triggers record under the
    revert; the counts of rows restored, deleted and put back."""
    cursor = conn.connection.dbapi_connection.cursor()
    table, history = _tables(d)
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
