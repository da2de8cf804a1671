"""What transforms replaced, and the curated rows as staff browse them.

Every row of `reference.<dataset>` carries the transform whose version it is
(`source_transform_id`). When a transform updates a row, or a revert deletes one, the table's
statement triggers copy the row as it was into `reference.<dataset>_history` under that
transform (migrations_data d0008); rows a transform inserts are known by their stamp alone, so
an all-new transform writes no history. From the two, a row's versions are read newest first,
and a transform can be reverted exactly (app/transforms/revert.py).

Writing transactions name their transform with `writing()`, which also takes the lock that
makes the transforms and reverts of one customer's dataset publish one after the other: the
order of the history is the order in which they published.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from psycopg import sql
from sqlalchemy import Connection, select, text

from app.datasets.base import Dataset, Field
from app.errors import Refused
from app.models.data.workspace import Transform

# Stand-ins for NULL in a key, so that key columns compare with `=` (which a hash join can
# use) and NULL equals NULL as the unique index has it. None of them is a value a cast gives:
# text is trimmed and empty is NULL; numbers are digits; dates are ISO dates.
NULL_AS = {
    "text": "''",
    "currency": "''",
    "numeric": "'NaN'::numeric",
    "date": "'-infinity'::date",
    "timestamp": "'-infinity'::timestamptz",
}
BOOKKEEPING = ("source_import_id", "loaded_at", "source_transform_id")


def writing(conn: Connection, transform) -> None:
    """In a transaction that changes `transform`'s dataset for its customer: wait for any other
    transform or revert of the same rows to publish, then name the transform for the history
    triggers. Both end with the transaction."""
    conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"reference.{transform.dataset}:{transform.customer_id}"},
    )
    conn.execute(
        text("SELECT set_config('backoffice.transform_id', :id, true)"),
        {"id": str(transform.id)},
    )


def same_key(dataset: Dataset, a: str, b: str) -> sql.Composable:
    """SQL: rows `a` and `b` have the same key (NULLs equal), with `=` on every column."""
    fields = {f.name: f for f in dataset.fields}
    return sql.SQL(" AND ").join(_key_equal(fields[k], a, b) for k in dataset.key)


def _key_equal(f: Field, a: str, b: str) -> sql.Composable:
    left, right = sql.Identifier(a, f.name), sql.Identifier(b, f.name)
    if f.required:
        return sql.SQL("{} = {}").format(left, right)
    if f.type == "boolean":
        return sql.SQL(
            "({0} IS NULL) = ({1} IS NULL) AND coalesce({0}, false) = coalesce({1}, false)"
        ).format(left, right)
    null_as = sql.SQL(NULL_AS[f.type])
    return sql.SQL("coalesce({0}, {2}) = coalesce({1}, {2})").format(left, right, null_as)


def row_columns(dataset: Dataset) -> list[str]:
    """Every column of a reference row, as the history keeps it."""
    return ["customer_id", *(f.name for f in dataset.fields), *BOOKKEEPING]


# -- reading ---------------------------------------------------------------------------------


CASTS = {
    "timestamp": "timestamptz",
    "currency": "text",
}  # field type -> SQL type, where they differ


PG_TYPES = {"numeric": "numeric", "date": "date", "timestamp": "timestamptz", "boolean": "boolean"}
MAX_KEY_TEXT = 1000  # a key value from an address: more is no key anyone stored


def checked_value(conn: Connection, f: Field, value: str) -> str:
    """A key value given as text, refused (422) unless the column's type reads it as the
    server does (`pg_input_is_valid`), so that a cast in SQL never fails on it."""
    ok = "\x00" not in value and len(value) <= MAX_KEY_TEXT
    if ok and f.type in PG_TYPES:
        ok = conn.execute(
            text("SELECT pg_input_is_valid(:v, :t)"), {"v": value, "t": PG_TYPES[f.type]}
        ).scalar()
    if not ok:
        raise Refused(f"{f.name}: {value[:40]!r} is not a {f.type}", code="invalid_key", status=422)
    return value


def key_filter(
    conn: Connection, dataset: Dataset, key: dict[str, str | None]
) -> tuple[str, dict[str, Any]]:
    """A WHERE clause (for the row and history indexes) matching one key given as text (None
    for an empty key column)."""
    clauses, params = [], {}
    fields = {f.name: f for f in dataset.fields}
    for n, name in enumerate(dataset.key):
        value = key.get(name)
        if value is None:
            clauses.append(f'"{name}" IS NULL')
        else:
            kind = CASTS.get(fields[name].type, fields[name].type)
            clauses.append(f'"{name}" = CAST(:k{n} AS {kind})')
            params[f"k{n}"] = checked_value(conn, fields[name], value)
    return " AND ".join(clauses), params


def versions(conn: Connection, dataset: Dataset, customer_id: int, key: dict) -> list[dict]:
    """A row's versions, newest first: the stored one (or its absence, when a revert removed
    it), then each version a transform replaced, with the transform it came from and the one
    that replaced it. Empty when the key was never stored."""
    where, params = key_filter(conn, dataset, key)
    params["c"] = customer_id
    conn.execute(text("SET LOCAL timezone = 'UTC'"))
    fields = [f.name for f in dataset.fields]
    as_text = ", ".join(f'"{n}"::text AS "{n}"' for n in fields)
    current = (
        conn.execute(
            text(
                f"SELECT {as_text}, source_import_id, source_transform_id, loaded_at "
                f"FROM reference.{dataset.name} WHERE customer_id = :c AND {where}"
            ),
            params,
        )
        .mappings()
        .first()
    )
    older = (
        conn.execute(
            text(
                f"SELECT transform_id, op, {as_text}, source_import_id, source_transform_id, "
                f"loaded_at FROM reference.{dataset.name}_history "
                f"WHERE customer_id = :c AND {where} ORDER BY id DESC"
            ),
            params,
        )
        .mappings()
        .all()
    )
    found: list[dict] = []
    if current is not None:
        found.append(_version(current, fields, replaced_by=None))
    elif older:
        found.append({"absent": True, "replaced_by": None, "removed_by": older[0]["transform_id"]})
    for h in older:
        if h["op"] == "insert":  # a revert put it back: before that, there was no such row
            found.append({"absent": True, "replaced_by": h["transform_id"]})
        else:
            found.append(_version(h, fields, replaced_by=h["transform_id"]))
    return found


def attributed(session, references, found: list[dict]) -> list[dict]:
    """Versions with their transform (id, import, revert link, when it finished) and the user
    who started it: one query for the transforms, the users through the reference cache."""
    ids = {v["transform_id"] for v in found if v.get("transform_id")}
    ids |= {v["replaced_by"] for v in found if v.get("replaced_by")}
    records = {}
    if ids:
        rows = session.scalars(select(Transform).where(Transform.id.in_(ids)))
        records = {t.id: t for t in rows}
    users = references.lookup_many(session, "user", (t.created_by for t in records.values()))
    for version in found:
        made = records.get(version.get("transform_id"))
        creator = users.get(made.created_by) if made else None
        version["transform"] = (
            {
                "id": made.id,
                "import_id": made.import_id,
                "reverts_id": made.reverts_id,
                "finished_at": made.finished_at.isoformat() if made.finished_at else None,
                "creator": creator.as_dict() if creator and creator.exists else None,
            }
            if made
            else None
        )
    return found


def _version(row, fields: list[str], *, replaced_by: int | None) -> dict:
    return {
        "values": {n: row[n] for n in fields},
        "transform_id": row["source_transform_id"],
        "import_id": row["source_import_id"],
        "loaded_at": row["loaded_at"],
        "replaced_by": replaced_by,
    }


def key_from(dataset: Dataset, args) -> dict[str, str | None]:
    """The key named by query parameters, one per key column (empty: the column is empty);
    refused (422) when one is missing."""
    missing = [k for k in dataset.key if k not in args]
    if missing:
        raise Refused(
            f"give every key column of {dataset.name}: {', '.join(missing)} missing "
            "(an empty value for an empty column)",
            code="missing_field",
            status=422,
        )
    return {k: (args.get(k) or None) for k in dataset.key}


def shown(row: dict) -> dict:
    """A row of `rows_page` or a version of `versions` as JSON: the time in ISO 8601."""
    at = row.get("loaded_at")
    return {**row, "loaded_at": at.isoformat() if at else None}


def encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_cursor(conn: Connection, dataset: Dataset, cursor: str) -> list:
    """The key values a cursor carries; refused (422) when it is not one this list gave."""
    values = None
    if len(cursor) <= 4 * MAX_KEY_TEXT * len(dataset.key):
        try:
            values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        except (ValueError, RecursionError):
            values = None
    fields = {f.name: f for f in dataset.fields}
    if (
        not isinstance(values, list)
        or len(values) != len(dataset.key)
        or not all(v is None or isinstance(v, str) for v in values)
    ):
        raise Refused("after: not a cursor this list gave", code="invalid_cursor", status=422)
    pairs = zip(dataset.key, values, strict=True)
    return [v if v is None else checked_value(conn, fields[k], v) for k, v in pairs]


def rows_page(
    conn: Connection,
    dataset: Dataset,
    customer_id: int,
    *,
    limit: int,
    after: str | None = None,
    starts: str | None = None,
) -> tuple[list[dict], list | None]:
    """A page of the customer's rows in key order (keyset: from the unique index, whatever the
    table's size), after the key the cursor `after` carries, of keys whose first column
    starts with `starts`; and the key to make the next page's cursor of, or None."""
    fields = {f.name: f for f in dataset.fields}
    key = list(dataset.key)
    params: dict[str, Any] = {"c": customer_id, "limit": limit + 1}
    clauses = ["customer_id = :c"]
    first = key[0]
    if starts:
        clauses.append(f'starts_with("{first}"::text, :s)')
        params["s"] = starts
        if fields[first].type in ("text", "currency"):  # bounds the index scan can stop at
            clauses.append(f'"{first}" >= :s AND "{first}" < :s_end')
            params["s_end"] = starts + "\U0010ffff"
    if after is not None:
        last = decode_cursor(conn, dataset, after)
        if fields[first].required and last[0] is not None:  # an index bound for the scan
            clauses.append(
                f'"{first}" >= CAST(:a0 AS {CASTS.get(fields[first].type, fields[first].type)})'
            )
        clauses.append(_after(dataset, last, params))
    # The table's own columns (r.), not the text the page shows: ORDER BY would take the
    # output names, sort "10.5" before "5" and read no index.
    order = ", ".join(f'r."{k}" ASC NULLS LAST' for k in key)
    names = ", ".join(f'"{f}"::text AS "{f}"' for f in fields)
    conn.execute(text("SET LOCAL timezone = 'UTC'"))
    rows = (
        conn.execute(
            text(
                f"SELECT {names}, source_transform_id, loaded_at FROM reference.{dataset.name} r "
                f"WHERE {' AND '.join(clauses)} ORDER BY {order} LIMIT :limit"
            ),
            params,
        )
        .mappings()
        .all()
    )
    page = [dict(r) for r in rows[:limit]]
    more = len(rows) > limit
    return page, ([page[-1][k] for k in key] if more else None)


def _after(dataset: Dataset, after: list, params: dict) -> str:
    """Rows after the key `after` in the index's order (ascending, NULLs last), as SQL."""
    types = {f.name: f.type for f in dataset.fields}

    def beyond(n: int) -> str:
        name = dataset.key[n]
        col = f'"{name}"'
        value = after[n]
        rest = beyond(n + 1) if n + 1 < len(dataset.key) else "false"
        if value is None:  # NULLs come last: only more NULLs, further on
            return f"({col} IS NULL AND {rest})"
        params[f"a{n}"] = value
        v = f"CAST(:a{n} AS {CASTS.get(types[name], types[name])})"
        return f"({col} > {v} OR {col} IS NULL OR ({col} = {v} AND {rest}))"

    return beyond(0)
