"""Line numbers of staged records, from the anchors an import keeps (`workspace.import_lines`).

The client sends a file's bytes to COPY untouched, and the staging table numbers its records
(`rec`, an identity column filled in file order by the single COPY stream). Where a record
starts in the file is needed only where a line is shown (rejected values, the rows page), so
it is derived there: the last anchor at or before the record, plus the distance. An anchor is
stored where "one line per record" breaks: the first record, and the record after one that
spans lines or after a blank line. Most files have one anchor.
"""

from __future__ import annotations

from collections.abc import Iterable

from psycopg import sql


def line_of(import_id: int, rec: sql.Composable) -> sql.Composable:
    """SQL: the physical line where the staged record `rec` (an expression) starts."""
    return sql.SQL(
        "(SELECT a.line + ({rec} - a.rec) FROM workspace.import_lines a "
        "WHERE a.import_id = {iid} AND a.rec <= {rec} ORDER BY a.rec DESC LIMIT 1)"
    ).format(rec=rec, iid=sql.Literal(import_id))


def save_anchors(cursor, import_id: int, anchors: Iterable[tuple[int, int]]) -> None:
    """Replace the import's anchors (a retry's attempt may have left none, or others)."""
    cursor.execute("DELETE FROM workspace.import_lines WHERE import_id = %s", (import_id,))
    with cursor.copy("COPY workspace.import_lines (import_id, rec, line) FROM STDIN") as copy:
        for rec, line in anchors:
            copy.write_row((import_id, rec, line))
