"""The import job: one import's file, streamed through `COPY` into `workspace.import_<id>`.

The file comes from `workspace.import_files` (an upload, readable by a worker on any host), or
from the path the CLI's synchronous mode vouches for. Each attempt stages into a table of its
own; the attempt that passes the fence renames it to `import_<id>` and marks the import staged,
in the same transaction as its publish: readers see all of it or nothing.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Connection, select, text

from app.imports.csv_stream import CHUNK, CsvError, RecordStream, pg_encoding, read_header
from app.imports.lines import save_anchors
from app.jobs import paths
from app.jobs.runner import JobContext, JobFailed, fence
from app.models.data.workspace import ImportBatch

CONTEXT_LINE = re.compile(r"line (\d+)")
CONTEXT_COLUMN = re.compile(r"column c(\d+)")


class ImportJob:
    """Stage one import's file into `workspace.import_<id>` through COPY."""

    def run(self, ctx: JobContext) -> dict[str, Any]:
        import_id = ctx.params["import_id"]
        with ctx.data_transaction() as conn:
            # No lock on the import: a paused attempt that still holds one must not block the
            # attempt that replaced it. The fence at publish decides which one counts.
            batch = conn.execute(
                select(ImportBatch.__table__).where(ImportBatch.id == import_id)
            ).one()
            if batch.status == "staged":  # a retry after a publish that did commit
                result = _result(batch.id, batch.rows_staged, batch.header)
                ctx.publish(conn, result)
                return result
            with self._source(ctx, batch) as source:
                result = self._stage(ctx, conn, batch, source)
            fence(conn, ctx.claim)  # from here on this attempt holds the job row's lock
            conn.execute(text(f'DROP TABLE IF EXISTS workspace."import_{import_id}"'))
            save_anchors(
                conn.connection.dbapi_connection.cursor(), import_id, result.pop("anchors")
            )
            conn.execute(
                text(
                    f'ALTER TABLE workspace."import_{import_id}_a{ctx.claim.attempt}" '
                    f'RENAME TO "import_{import_id}"'
                )
            )
            conn.execute(
                text(
                    "UPDATE workspace.imports SET status = 'staged', "
                    "header = CAST(:header AS jsonb), delimiter = :delimiter, rows_staged = :rows, "
                    "size_bytes = :size, sha256 = :sha256, staged_at = clock_timestamp(), "
                    "error = NULL WHERE id = :id"
                ),
                {
                    "header": json.dumps(result.pop("header")),
                    "delimiter": result.pop("delimiter"),
                    "size": result.pop("size"),
                    "sha256": result.pop("sha256"),
                    "rows": result["rows_staged"],
                    "id": import_id,
                },
            )
            ctx.publish(conn, result)
        return result

    @contextlib.contextmanager
    def _source(self, ctx: JobContext, batch) -> Iterator[io.BufferedReader]:
        value = ctx.params.get("local_path")
        if value:
            # Only the command that typed the path reads it: uploads are in the database, so
            # no folder is open to a path taken from the jobs table.
            path = paths.checked(value, [], ctx.vouched, what="import file")
            with os.fdopen(paths.open_for_reading(path), "rb") as handle:
                yield handle
            return
        raw = ctx.backoffice.engines.data.raw_connection()
        try:
            yield io.BufferedReader(_ChunkReader(raw.dbapi_connection, batch.id), CHUNK)
        finally:
            raw.close()

    def _stage(self, ctx: JobContext, conn: Connection, batch, source) -> dict[str, Any]:
        codec, pg_name = pg_encoding(batch.encoding)
        try:
            header = read_header(source, codec, batch.delimiter)
        except CsvError as exc:
            raise JobFailed(exc.message, line=exc.line, column=exc.column) from None
        # This attempt's own table: another attempt of the same job may be alive (paused).
        table = sql.Identifier("workspace", f"import_{batch.id}_a{ctx.claim.attempt}")
        names = [sql.Identifier(f"c{n}") for n in range(1, len(header.names) + 1)]
        # `rec`: the record's number, given in file order by the one COPY stream that fills it
        # (one session: its cached values follow on; a cache of 1 would cost a fifth more).
        columns = [sql.SQL("rec bigint GENERATED ALWAYS AS IDENTITY (CACHE 10000)")] + [
            sql.SQL("{} text").format(name) for name in names
        ]
        cursor = conn.connection.dbapi_connection.cursor()
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        # Unlogged: staged text is a step on the way, rebuilt from the file, so it is not
        # written twice (table and WAL). A crash of the data server empties such a table:
        # `lost_in_a_crash` says so to whoever reads it next.
        cursor.execute(
            sql.SQL("CREATE UNLOGGED TABLE {} ({})").format(table, sql.SQL(", ").join(columns))
        )
        records = RecordStream(source, header, header.delimiter)
        copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, DELIMITER {}, ENCODING {})").format(
            table, sql.SQL(", ").join(names), sql.Literal(header.delimiter), sql.Literal(pg_name)
        )
        try:
            with cursor.copy(copy) as pipe:
                for chunk in records:
                    pipe.write(chunk)
                    ctx.report(
                        records.bytes_read, batch.size_bytes or None, "bytes", rows=records.records
                    )
                    ctx.check()
        except CsvError as exc:
            raise JobFailed(exc.message, line=exc.line, column=exc.column) from None
        except psycopg.errors.QueryCanceled:
            ctx.check()
            raise
        except psycopg.DataError as exc:  # the server's CSV parser or encoding check
            raise _copy_failure(exc, records, header.names) from None
        cursor.execute(sql.SQL("CREATE INDEX ON {} USING brin (rec)").format(table))
        ctx.report(records.bytes_read, records.bytes_read, "bytes", rows=records.records)
        return {
            **_result(batch.id, records.records, header.names),
            "header": header.names,
            "delimiter": header.delimiter,
            "size": records.bytes_read,
            "sha256": records.digest.hexdigest(),
            "anchors": records.anchors,
        }

    def on_failed(self, conn: Connection, params: dict, error: dict) -> None:
        conn.execute(
            text(
                "UPDATE workspace.imports SET status = 'failed', error = CAST(:error AS jsonb) "
                "WHERE id = :id AND status = 'pending'"
            ),
            {"error": json.dumps(error), "id": params["import_id"]},
        )

    def on_cancelled(self, conn: Connection, params: dict) -> None:
        conn.execute(
            text(
                "UPDATE workspace.imports SET status = 'cancelled' "
                "WHERE id = :id AND status = 'pending'"
            ),
            {"id": params["import_id"]},
        )


def _result(import_id: int, rows: int | None, header: list[str] | None) -> dict[str, Any]:
    return {"import_id": import_id, "rows_staged": rows or 0, "columns": len(header or [])}


def _copy_failure(exc: psycopg.Error, records: RecordStream, names: list[str]) -> JobFailed:
    """The server's error, told in the file's terms: physical line and header name."""
    diag = exc.diag
    context = diag.context or ""
    line = None
    if match := CONTEXT_LINE.search(context):
        line = records.line_of(int(match.group(1)))
    column = None
    if match := CONTEXT_COLUMN.search(context + " " + (diag.message_primary or "")):
        index = int(match.group(1))
        column = names[index - 1] if 0 < index <= len(names) else None
    message = diag.message_primary or str(exc)
    if message.startswith("extra data after last expected column"):
        message = f"more fields than the header's {len(names)}"
    elif message.startswith("missing data for column"):
        message = f"fewer fields than the header's {len(names)}"
    elif message.startswith("unterminated CSV quoted field"):
        message = "unterminated quoted field"
    return JobFailed(message, line=line, column=column)


class _ChunkReader(io.RawIOBase):
    """The stored upload, read chunk by chunk through a server-side cursor."""

    def __init__(self, dbapi_connection: psycopg.Connection, import_id: int) -> None:
        self._cursor = dbapi_connection.cursor(name=f"import_file_{import_id}")
        self._cursor.itersize = 2
        self._cursor.execute(
            "SELECT data FROM workspace.import_files WHERE import_id = %s ORDER BY seq",
            (import_id,),
        )
        self._rows = iter(self._cursor)
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer:
            row = next(self._rows, None)
            if row is None:
                return 0
            self._buffer = memoryview(row[0])
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n
