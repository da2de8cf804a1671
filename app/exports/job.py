"""The export job: a dataset's rows for one customer, streamed out by `COPY ... TO STDOUT`.

The job writes to a part file and renames it into place only after the fence, so a crash never
leaves a half file under the final name. Columns come in the dataset's order under their own
names, rows in key order, values in forms the transform reads back: exporting, importing and
transforming again gives the same rows.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import os
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO

from psycopg import sql
from sqlalchemy import Connection, Text, select, text

from app.datasets import DATASETS, Dataset
from app.datasets.base import TYPES, Field
from app.exports.service import export_dir
from app.jobs import paths
from app.jobs.runner import JobContext, fence
from app.models.data.workspace import Export

# What makes a spreadsheet read a text cell as a formula (tab and CR: what some programs strip
# before reading one): OWASP's list for CSV injection.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ROWS_PER_WRITE = 4096


def _column(f: Field, neutralize: bool) -> sql.Composable:
    """A text cell that starts like a formula gets a leading ', which spreadsheets show as text.
    Done in the COPY's own SELECT, so the export stays one server-side stream."""
    column = sql.Identifier("t", f.name)
    if not neutralize or TYPES[f.type] is not Text:
        return column  # numbers, dates and booleans hold no formula: exact as they are
    return sql.SQL(
        "CASE WHEN left({c}, 1) IN ({starts}) THEN {quote} || {c} ELSE {c} END AS {n}"
    ).format(
        c=column,
        starts=sql.SQL(", ").join(sql.Literal(c) for c in FORMULA_STARTS),
        quote=sql.Literal("'"),
        n=sql.Identifier(f.name),
    )


def copy_statement(dataset: Dataset, customer_id: int, neutralize: bool = False) -> sql.Composable:
    names = sql.SQL(", ").join(_column(f, neutralize) for f in dataset.fields)
    # Qualified: a bare name in ORDER BY would sort by the (neutralized) output column.
    key = sql.SQL(", ").join(sql.Identifier("t", k) for k in dataset.key)
    return sql.SQL(
        "COPY (SELECT {names} FROM {table} AS t WHERE t.customer_id = {cid} ORDER BY {key}) "
        "TO STDOUT (FORMAT csv, HEADER)"
    ).format(
        names=names,
        table=sql.Identifier("reference", dataset.name),
        cid=sql.Literal(customer_id),
        key=key,
    )


def _open_output(fd: int, format: str) -> BinaryIO:
    handle = os.fdopen(fd, "wb")
    if format == "csv.gz":
        # Closing the gzip stream does not close the file it writes to: close both.
        return _Closing(
            gzip.GzipFile(filename="", mode="wb", fileobj=handle, compresslevel=6), handle
        )
    return handle


@contextlib.contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """Python's cycle collector off while rows stream. The copy makes a few objects per row
    and no cycles (refcounting frees them all), but every so many objects the collector walks
    the whole heap, which in this process (SQLAlchemy, the app) is large: at 10M rows that cost
    a fifth of the export's time. Several exports at once: the first to end turns it back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Closing(contextlib.AbstractContextManager):
    def __init__(self, stream, *others) -> None:
        self.stream, self.others = stream, others

    def write(self, data: bytes) -> int:
        return self.stream.write(data)

    def __exit__(self, *exc) -> None:
        try:
            self.stream.close()
        finally:
            for other in self.others:
                other.close()


def target(ctx: JobContext, export) -> Path:
    """Where this export goes: the CLI's --output, or EXPORT_DIR / the generated name. Both come
    from data-engine rows, so both are checked (app/jobs/paths.py)."""
    bo = ctx.backoffice
    folder = export_dir(bo.settings, bo.instance_path)
    paths.make_folder(folder)
    output = ctx.params.get("output") or str(folder / (export.file_name or ""))
    return paths.checked(output, [folder], ctx.vouched, what="export file")


class ExportJob:
    def run(self, ctx: JobContext) -> dict[str, Any]:
        with ctx.data_transaction() as conn:
            export = conn.execute(
                select(Export.__table__).where(Export.id == ctx.params["export_id"])
            ).one()
            final = target(ctx, export)
            if export.status == "succeeded" and final.exists():  # published before a crash
                result = {
                    "export_id": export.id,
                    "rows": export.rows,
                    "size_bytes": export.size_bytes,
                }
                ctx.publish(conn, result)
                return result
            conn.execute(text("SET LOCAL timezone = 'UTC'"))
            paths.make_folder(final.parent)
            paths.refuse_link(final)
            part = final.with_name(f".{final.name}.part-{ctx.claim.job_id}-{ctx.claim.attempt}")
            fd = paths.create_private(part)  # before the try: a name in the way is not ours
            try:
                rows = self._write(ctx, conn, export, fd)
                fence(conn, ctx.claim)
                os.replace(part, final)
            finally:
                part.unlink(missing_ok=True)
            size = final.stat().st_size
            conn.execute(
                text(
                    "UPDATE workspace.exports SET status = 'succeeded', rows = :rows, "
                    "size_bytes = :size, finished_at = clock_timestamp() WHERE id = :id"
                ),
                {"rows": rows, "size": size, "id": export.id},
            )
            result = {"export_id": export.id, "rows": rows, "size_bytes": size}
            ctx.publish(conn, result)
        return result

    def _write(self, ctx: JobContext, conn: Connection, export, fd: int) -> int:
        cursor = conn.connection.dbapi_connection.cursor()
        written = 0
        with (
            _no_cycle_collection(),
            _open_output(fd, export.format) as out,
            cursor.copy(
                copy_statement(
                    DATASETS[export.dataset], export.customer_id, export.neutralize_formulas
                )
            ) as copy,
        ):
            # libpq hands over one row at a time: gathered into blocks, so that the writing
            # (and the gzip stream, and the progress) costs a call per block, not per row.
            rows = iter(copy)
            while block := list(islice(rows, ROWS_PER_WRITE)):
                data = b"".join(block)
                out.write(data)
                written += len(data)
                if written >= 1 << 24:  # every 16 MB
                    ctx.report(ctx.progress.done + written, None, "bytes")
                    written = 0
                    ctx.check()
        ctx.report(ctx.progress.done + written, None, "bytes")
        return cursor.rowcount

    def on_failed(self, conn: Connection, params: dict, error: dict) -> None:
        conn.execute(
            text(
                "UPDATE workspace.exports SET status = 'failed', error = :e, "
                "finished_at = clock_timestamp() WHERE id = :id AND status = 'pending'"
            ),
            {"e": error.get("message"), "id": params["export_id"]},
        )

    def on_cancelled(self, conn: Connection, params: dict) -> None:
        conn.execute(
            text(
                "UPDATE workspace.exports SET status = 'cancelled', "
                "finished_at = clock_timestamp() WHERE id = :id AND status = 'pending'"
            ),
            {"id": params["export_id"]},
        )
