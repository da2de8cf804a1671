"""The preview's SQL: what a transform's upsert would do to the stored rows, counted and shown
value by value, from the transform's own source rows and test of change (app/transforms/sql.py)
joined to the stored rows instead of written to them."""

from __future__ import annotations

from psycopg import sql

from app.imports.lines import line_of
from app.transforms.sql import Plan


def would_write(plan: Plan, customer_id: int) -> sql.Composable:
    """What `upsert` would do, without doing it: (new keys, stored rows that would change,
    distinct keys, then for each field an update writes, how many stored values would
    change), from the same valid rows and the same test of change."""
    return sql.SQL(
        "SELECT count(*) FILTER (WHERE t.customer_id IS NULL), "
        "count(*) FILTER (WHERE t.customer_id IS NOT NULL AND {changed}), count(*) {per} "
        "FROM {matched}"
    ).format(
        changed=plan.changed(sql.SQL("t"), sql.SQL("src")),
        per=sql.SQL("").join(
            sql.SQL(
                ", count(*) FILTER (WHERE t.customer_id IS NOT NULL "
                "AND t.{0} IS DISTINCT FROM src.{0})"
            ).format(sql.Identifier(n))
            for n in plan.updates
        ),
        matched=_matched(plan, customer_id),
    )


def changed_rows(plan: Plan, customer_id: int, first: int) -> sql.Composable:
    """The first `first` stored rows, in file order, that `upsert` would change: the
    source line, the key's values, then for each field an update writes its stored and
    its new value as text and whether the two differ."""
    d = plan.dataset
    return sql.SQL(
        "SELECT {line}, {key} {pairs} FROM {matched} "
        "WHERE t.customer_id IS NOT NULL AND {changed} ORDER BY src.rec LIMIT {first}"
    ).format(
        line=line_of(plan.import_id, sql.SQL("src.rec")),
        key=sql.SQL(", ").join(sql.SQL("src.{}::text").format(sql.Identifier(k)) for k in d.key),
        pairs=sql.SQL("").join(
            sql.SQL(", t.{0}::text, src.{0}::text, t.{0} IS DISTINCT FROM src.{0}").format(
                sql.Identifier(n)
            )
            for n in plan.updates
        ),
        matched=_matched(plan, customer_id),
        changed=plan.changed(sql.SQL("t"), sql.SQL("src")),
        first=sql.Literal(first),
    )


def _matched(plan: Plan, customer_id: int) -> sql.Composable:
    """The valid rows (the last of each key) `src`, each beside the stored row `t` of its
    key, matched as the unique index matches it (NULLs equal); `t` is NULL for new keys."""
    d = plan.dataset
    required = {f.name for f in d.fields if f.required}  # never NULL in a valid row
    matches = [
        sql.SQL(
            "t.{0} = src.{0}" if k in required else "t.{0} IS NOT DISTINCT FROM src.{0}"
        ).format(sql.Identifier(k))
        for k in d.key
    ]
    return sql.SQL("({source}) src LEFT JOIN {table} t ON t.customer_id = {cid} AND {m}").format(
        source=plan.valid_rows(deduplicate=True),
        table=sql.Identifier("reference", d.name),
        cid=sql.Literal(customer_id),
        m=sql.SQL(" AND ").join(matches),
    )
