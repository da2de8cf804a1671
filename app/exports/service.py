"""Exports: a dataset's rows for one customer, streamed out by `COPY ... TO STDOUT` as CSV.

The job writes to a part file and renames it into place only after the fence, so a crash never
leaves a half file under the final name. API exports go under `EXPORT_DIR` with a generated
name (never one taken from the user); the CLI writes where it is told. Columns come in the
dataset's order under their own names, rows in key order, values in forms the transform reads
back: exporting, importing and transforming again gives the same rows.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from psycopg import sql
from sqlalchemy import Connection, Text, select, text

from app.datasets import DATASETS, Dataset
from app.datasets.base import TYPES, Field
from app.db.session import BackofficeSession
from app.errors import APIError
from app.jobs import paths, queue
from app.jobs.runner import JobContext, JobFailed, fence
from app.models.data.workspace import Export

FORMATS = ("csv", "csv.gz")


def export_dir(settings, instance_path: str) -> Path:
    return Path(settings.export_dir or Path(instance_path) / "exports")


# What makes a spreadsheet read a text cell as a formula (tab and CR: what some programs strip
# before reading one): OWASP's list for CSV injection.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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


def create(
    session: BackofficeSession,
    references,
    *,
    dataset: object,
    customer_id: object,
    format: object = "csv",
    created_by: int | None,
    output: str | None = None,
    neutralize_formulas: object = False,
    max_attempts: int = 3,
) -> Export:
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise APIError(
            f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}",
            code="unknown_dataset",
            status=422,
        )
    if format not in FORMATS:
        raise APIError("format must be csv or csv.gz", code="invalid_field", status=422)
    if not isinstance(neutralize_formulas, bool):
        raise APIError(
            "neutralize_formulas must be true or false", code="invalid_field", status=422
        )
    references.customer(session, customer_id)
    export = Export(
        dataset=dataset,
        customer_id=customer_id,
        created_by=created_by,
        format=format,
        neutralize_formulas=neutralize_formulas,
    )
    session.add(export)
    session.flush()
    if output is None:
        export.file_name = f"{dataset}-{export.id}-{secrets.token_hex(8)}.{format}"
    params: dict[str, Any] = {"export_id": export.id}
    if output is not None:
        params["output"] = os.path.abspath(output)
    job = queue.enqueue(
        session,
        "export",
        params,
        customer_id=customer_id,
        created_by=created_by,
        max_attempts=max_attempts,
    )
    export.job_id = job.id
    session.flush()
    return export


def get(session: BackofficeSession, export_id: int) -> Export:
    return session.get_or_404(Export, export_id, "export")


def list_exports(
    session: BackofficeSession, *, customer_id: int | None = None, limit: int = 100
) -> list[Export]:
    query = select(Export).order_by(Export.id.desc()).limit(limit)
    if customer_id:
        query = query.where(Export.customer_id == customer_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Download:
    """An export's file, open, with what a response needs to serve it as an attachment."""

    export: Export
    handle: BinaryIO
    name: str
    mimetype: str
    size: int


def ready_download(session: BackofficeSession, bo, export_id: int) -> Download:
    """The file of a finished export, open for reading. Every role may read every customer's
    data; the customer must still exist (a deleted customer's exports are not served)."""
    e = get(session, export_id)
    if e.status != "succeeded" or not e.file_name:
        raise APIError(f"export {export_id} is {e.status}, not ready", code="not_ready", status=409)
    customer = bo.references.lookup(session, "customer", e.customer_id)
    if not customer.exists:
        raise APIError(f"no export with id {export_id}", code="not_found", status=404)
    handle = open_download(bo, e)
    return Download(
        export=e,
        handle=handle,
        name=f"{e.dataset}-{customer.label}-{e.id}.{e.format}",
        mimetype="application/gzip" if e.format == "csv.gz" else "text/csv",
        size=os.fstat(handle.fileno()).st_size,
    )


def open_download(bo, e: Export) -> BinaryIO:
    """The export's file for a download: its stored name is a data-engine value, so it must
    lead inside EXPORT_DIR, and a symbolic link there is not followed."""
    folder = export_dir(bo.settings, bo.instance_path)
    try:
        path = paths.checked(str(folder / (e.file_name or "")), [folder], (), what="export file")
        handle = os.fdopen(paths.open_for_reading(path), "rb")
    except JobFailed:
        raise APIError(
            "the export's file is not on this host (EXPORT_DIR must be shared between hosts)",
            code="file_missing",
            status=404,
        ) from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise APIError("the export's file is not a file", code="file_missing", status=404)
    return handle


def _open_output(fd: int, format: str) -> BinaryIO:
    handle = os.fdopen(fd, "wb")
    if format == "csv.gz":
        # Closing the gzip stream does not close the file it writes to: close both.
        return _Closing(
            gzip.GzipFile(filename="", mode="wb", fileobj=handle, compresslevel=6), handle
        )
    return handle


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


def target(ctx: JobContext, e) -> Path:
    """Where this export goes: the CLI's --output, or EXPORT_DIR / the generated name. Both come
    from data-engine rows, so both are checked (app/jobs/paths.py)."""
    bo = ctx.backoffice
    folder = export_dir(bo.settings, bo.instance_path)
    paths.make_folder(folder)
    output = ctx.params.get("output") or str(folder / (e.file_name or ""))
    return paths.checked(output, [folder], ctx.vouched, what="export file")


class ExportJob:
    def run(self, ctx: JobContext) -> dict[str, Any]:
        with ctx.data_transaction() as conn:
            e = conn.execute(
                select(Export.__table__).where(Export.id == ctx.params["export_id"])
            ).one()
            final = target(ctx, e)
            if e.status == "succeeded" and final.exists():  # published before a crash
                result = {"export_id": e.id, "rows": e.rows, "size_bytes": e.size_bytes}
                ctx.publish(conn, result)
                return result
            conn.execute(text("SET LOCAL timezone = 'UTC'"))
            paths.make_folder(final.parent)
            paths.refuse_link(final)
            part = final.with_name(f".{final.name}.part-{ctx.claim.job_id}-{ctx.claim.attempt}")
            fd = paths.create_private(part)  # before the try: a name in the way is not ours
            try:
                rows = self._write(ctx, conn, e, fd)
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
                {"rows": rows, "size": size, "id": e.id},
            )
            result = {"export_id": e.id, "rows": rows, "size_bytes": size}
            ctx.publish(conn, result)
        return result

    def _write(self, ctx: JobContext, conn: Connection, e, fd: int) -> int:
        cursor = conn.connection.dbapi_connection.cursor()
        written = 0
        with (
            _open_output(fd, e.format) as out,
            cursor.copy(
                copy_statement(DATASETS[e.dataset], e.customer_id, e.neutralize_formulas)
            ) as copy,
        ):
            for data in copy:
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
