"""A transform's rejected rows as a file to fix and send back: one line per rejected source row,
in file order, with the import's own columns (its header and the values as staged) followed by
`_line`, `_column` and `_reason` (a row refused for several values names them all, `; `
between). Imported again, it maps like the original: the default mapping ignores headers that
start with `_`.

Written by one `COPY ... TO STDOUT` on a connection of its own, so the answer streams after the
request's unit of work has ended and memory stays flat for a million rejects. The values go out
exactly as staged (a round trip must give them back); docs/DATASETS.md says so.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from psycopg import sql
from sqlalchemy import text as sql_text

from app.datasets import DATASETS
from app.db.session import BackofficeSession
from app.imports.staged import lost_in_a_crash, require_staged
from app.models.data.workspace import ImportBatch, Transform
from app.transforms.service import REJECT_COLUMNS


def rec_of(import_id: int, line: sql.Composable) -> sql.Composable:
    """SQL: the staged record that starts on `line` (the inverse of `lines.line_of`)."""
    return sql.SQL(
        "(SELECT a.rec + ({line} - a.line) FROM workspace.import_lines a "
        "WHERE a.import_id = {iid} AND a.line <= {line} ORDER BY a.rec DESC LIMIT 1)"
    ).format(line=line, iid=sql.Literal(import_id))


def rejects_csv(
    session: BackofficeSession, engines, transform: Transform, batch: ImportBatch
) -> Iterator[bytes]:
    """The file, as pieces of bytes; refused (409) before the first one when the import's
    staged rows are gone (purged, or lost in a crash)."""
    require_staged(session, batch)
    names = batch.header or []
    header = io.StringIO()
    csv.writer(header, lineterminator="\n").writerow([*names, *REJECT_COLUMNS])
    columns = sql.SQL(", ").join(sql.Identifier("s", f"c{n}") for n in range(1, len(names) + 1))
    copy = sql.SQL(
        "COPY (SELECT {columns}{comma} e.line, e.columns, e.reasons FROM ("
        "SELECT line, string_agg(\"column\", '; ' ORDER BY id) AS columns, "
        "string_agg(reason, '; ' ORDER BY id) AS reasons FROM workspace.transform_errors "
        "WHERE transform_id = {tid} GROUP BY line) e "
        "JOIN {staging} s ON s.rec = {rec} ORDER BY e.line) TO STDOUT (FORMAT csv)"
    ).format(
        columns=columns,
        comma=sql.SQL(", " if names else ""),
        tid=sql.Literal(transform.id),
        staging=sql.Identifier("workspace", batch.staging_table),
        rec=rec_of(batch.id, sql.SQL("e.line")),
    )

    def pieces() -> Iterator[bytes]:
        yield header.getvalue().encode()
        with engines.connect("data") as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            with cursor.copy(copy) as out:
                for data in out:
                    yield bytes(data)
            conn.rollback()

    return pieces()


def rejected_rows(session: BackofficeSession, transform: Transform) -> int:
    """How many source rows the transform rejected (lines in its rejects file)."""
    counted = sql_text(
        "SELECT count(DISTINCT line) FROM workspace.transform_errors WHERE transform_id = :t"
    )
    return session.connection_for("data").execute(counted, {"t": transform.id}).scalar_one()


def file_name(transform: Transform) -> str:
    return f"transform-{transform.id}-rejects.csv"


def keys_of_lines(
    session: BackofficeSession, transform: Transform, batch: ImportBatch, lines: list[int]
) -> dict[int, str]:
    """The key of each rejected row on `lines`, as the file had it (`P1`, or `DHL · EXP ·
    ...` for a key of several columns), so a page of rejects says which row each is; empty
    when the staged rows are gone or the key's columns were not mapped."""
    header = batch.header or []
    mapped = [transform.mapping.get(k) for k in DATASETS[transform.dataset].key]
    if not lines or batch.status != "staged" or not all(h in header for h in mapped):
        return {}
    conn = session.connection_for("data")
    cursor = conn.connection.dbapi_connection.cursor()
    if lost_in_a_crash(cursor, batch.id, batch.rows_staged):
        return {}
    keys = sql.SQL(", ").join(sql.Identifier("s", f"c{header.index(h) + 1}") for h in mapped)
    found = cursor.execute(
        sql.SQL(
            "SELECT e.line, {keys} FROM unnest(%s::bigint[]) e(line) "
            "JOIN {staging} s ON s.rec = {rec}"
        ).format(
            keys=keys,
            staging=sql.Identifier("workspace", batch.staging_table),
            rec=rec_of(batch.id, sql.SQL("e.line")),
        ),
        (lines,),
    )
    return {line: " · ".join(v or "—" for v in values) for line, *values in found}
