"""Imports: receiving a file, reading staged rows and their errors, purging them.

Receiving checks the customer (the cross-engine reference check), stores the upload's bytes in
`workspace.import_files` (so a worker on any host can read them) and queues an import job; the
job itself, which stages the file, is `app/imports/job.py`.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterator
from datetime import datetime
from typing import Any, BinaryIO

from psycopg import sql
from sqlalchemy import select, text

from app.db.session import BackofficeSession
from app.errors import Refused
from app.imports.csv_stream import CHUNK, CsvError, parse_delimiter, pg_encoding
from app.imports.lines import line_of
from app.imports.staged import require_staged
from app.jobs import queue
from app.models.data.workspace import ImportBatch, ImportFile, ImportLine
from app.transforms import service as transforms


class UploadTooLarge(Refused):
    status = 413
    code = "upload_too_large"


def clean_file_name(name: str | None) -> str:
    """For display only: the last path part, printable, at most 255 characters."""
    base = os.path.basename((name or "").replace("\\", "/")) or "upload.csv"
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] not in "CZ" or ch == " ")
    return base.strip()[:255] or "upload.csv"


def receive(
    session: BackofficeSession,
    references,
    *,
    customer_id: int,
    created_by: int | None,
    file_name: str | None,
    stream: BinaryIO | None,
    size_limit: int,
    encoding: str | None = None,
    delimiter: str | None = None,
    local_path: str | None = None,
    max_attempts: int = 3,
) -> ImportBatch:
    """Create an import and its queued job. The bytes come from `stream` (stored in the data
    database), or stay in `local_path` for a job this process runs itself (the CLI)."""
    references.customer(session, customer_id)
    try:
        pg_encoding(encoding)
        delimiter = parse_delimiter(delimiter)
    except CsvError as exc:
        raise Refused(exc.message, code="invalid_field", status=422) from None
    batch = ImportBatch(
        customer_id=customer_id,
        created_by=created_by,
        size_bytes=0,
        sha256="",
        file_name=clean_file_name(file_name),
        encoding=encoding,
        delimiter=delimiter,
    )
    session.add(batch)
    session.flush()
    if stream is not None:
        size, digest = _store(session, batch.id, stream, size_limit)
    else:
        assert local_path is not None
        # The job reads every byte anyway: it records the digest as it stages.
        size, digest = os.path.getsize(local_path), ""
    batch.size_bytes, batch.sha256 = size, digest
    params: dict[str, Any] = {"import_id": batch.id}
    if local_path is not None:
        params["local_path"] = os.path.realpath(local_path)
    queue.enqueue_for(session, batch, "import", params, max_attempts=max_attempts)
    return batch


def _store(session: BackofficeSession, import_id: int, stream: BinaryIO, limit: int):
    digest, size, seq = hashlib.sha256(), 0, 0
    conn = session.connection_for("data")
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise UploadTooLarge(f"the file is larger than the limit of {limit} bytes")
        digest.update(chunk)
        conn.execute(
            ImportFile.__table__.insert(), {"import_id": import_id, "seq": seq, "data": chunk}
        )
        seq += 1
    return size, digest.hexdigest()


# -- reading and purging ----------------------------------------------------------------------


def get_import(session: BackofficeSession, import_id: int) -> ImportBatch:
    return session.get_or_404(ImportBatch, import_id, "import")


def list_imports(
    session: BackofficeSession, *, customer_id: int | None = None, limit: int = 100
) -> list[ImportBatch]:
    query = select(ImportBatch).order_by(ImportBatch.id.desc()).limit(limit)
    if customer_id:
        query = query.where(ImportBatch.customer_id == customer_id)
    return list(session.scalars(query))


# What one answer shows of staged rows (the API's rows and the import's page), so that a few
# 15 MiB cells make no 60 MB answer: each cell cut at CELL_CHARS characters or fewer, so that
# a page's cells add up to PAGE_CHARS at most (about 4 MB of UTF-8); a page of many columns is
# shortened instead, to rows whose cells get MIN_CELL_CHARS each.
CELL_CHARS = 4000
MIN_CELL_CHARS = 64
PAGE_CHARS = 1_000_000
PIECE_CHARS = 1 << 20  # a whole cell is streamed in pieces of this many characters


def page_limit(batch: ImportBatch, limit: int) -> int:
    """The rows a page of `limit` may show of this import, within PAGE_CHARS."""
    columns = max(len(batch.header or []), 1)
    return max(1, min(limit, PAGE_CHARS // (columns * MIN_CELL_CHARS)))


def staged_rows(
    session: BackofficeSession, batch: ImportBatch, *, offset: int, limit: int
) -> list[dict[str, Any]]:
    """Rows `offset + 1` to `offset + limit` (at most `page_limit`), keyed by header, with
    their row number and source line. A cell longer than the page allows is cut in the
    database (the rest never reaches this process) and named in `truncated` with its whole
    length in characters; `cell_url` pieces say where its whole value is."""
    require_staged(session, batch)
    names = batch.header or []
    limit = page_limit(batch, limit)
    cut = max(MIN_CELL_CHARS, min(CELL_CHARS, PAGE_CHARS // (max(len(names), 1) * limit)))
    cells = [sql.Identifier(f"c{n}") for n in range(1, len(names) + 1)]
    # The lengths in one array: a column each would pass PostgreSQL's 1,664 per select list.
    query = sql.SQL(
        "SELECT s.rec, {line}, ARRAY[{lengths}]::int[] {values} FROM {staging} s "
        "WHERE rec > %s AND rec <= %s ORDER BY rec"
    ).format(
        line=line_of(batch.id, sql.SQL("s.rec")),
        lengths=sql.SQL(", ").join(sql.SQL("length({})").format(c) for c in cells)
        if cells
        else sql.SQL(""),
        values=sql.SQL("").join(
            sql.SQL(", left({}, {})").format(c, sql.Literal(cut)) for c in cells
        ),
        staging=sql.Identifier("workspace", batch.staging_table),
    )
    cursor = session.connection_for("data").connection.dbapi_connection.cursor()
    cursor.execute(query, (offset, offset + limit))
    rows = []
    for rec, line, sizes, *cut_values in cursor.fetchall():
        values = dict(zip(names, cut_values, strict=True))
        lengths = dict(zip(names, sizes or [], strict=True))
        rows.append(
            {
                "row": rec,
                "line": line,
                "values": values,
                "truncated": {
                    name: {"length": n, "column": names.index(name) + 1}
                    for name, n in lengths.items()
                    if n is not None and n > cut
                },
            }
        )
    return rows


def whole_cell(
    session: BackofficeSession, engines, batch: ImportBatch, row: int, column: int
) -> Iterator[str]:
    """One staged cell's whole value (row number, column number from 1), in pieces of
    PIECE_CHARS read one after the other on a connection of its own (the answer streams after
    the request's unit of work has ended): memory stays flat for a 16 MiB cell. Refused (404)
    before the first piece when there is no such cell."""
    require_staged(session, batch)
    if not 1 <= column <= len(batch.header or []):
        raise Refused(f"import {batch.id} has no column {column}", code="not_found", status=404)
    cell = sql.Identifier(f"c{column}")
    staging = sql.Identifier("workspace", batch.staging_table)
    found = (
        session.connection_for("data")
        .connection.dbapi_connection.cursor()
        .execute(sql.SQL("SELECT length({}) FROM {} WHERE rec = %s").format(cell, staging), (row,))
        .fetchone()
    )
    if found is None:
        raise Refused(f"import {batch.id} has no row {row}", code="not_found", status=404)
    piece = sql.SQL("SELECT substr({}, %s, %s) FROM {} WHERE rec = %s").format(cell, staging)

    def pieces() -> Iterator[str]:
        with engines.connect("data") as conn:
            cursor = conn.connection.dbapi_connection.cursor()
            for start in range(1, (found[0] or 0) + 1, PIECE_CHARS):
                yield cursor.execute(piece, (start, PIECE_CHARS, row)).fetchone()[0]
            conn.rollback()

    return pieces()


def purge(session: BackofficeSession, batch: ImportBatch) -> None:
    """Drop the staged rows and stored bytes; the import's record stays, as `purged`."""
    conn = session.connection_for("data")
    conn.execute(text(f'DROP TABLE IF EXISTS workspace."{batch.staging_table}"'))
    conn.execute(ImportFile.__table__.delete().where(ImportFile.import_id == batch.id))
    conn.execute(ImportLine.__table__.delete().where(ImportLine.import_id == batch.id))
    batch.status = "purged"
    session.flush()


def import_errors(
    session: BackofficeSession, batch: ImportBatch, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """What is wrong in an import, and how many things in all: why it failed (its line, column
    and message; first, on the first page), then the rows its transforms rejected (with the
    value), newest transform first."""
    rows, total = transforms.errors_of_import(session, batch.id, offset=offset, limit=limit)
    own = [batch.error] if batch.error and offset == 0 else []
    return own + [r.as_dict() for r in rows], total + (1 if batch.error else 0)


def purgeable(session: BackofficeSession, before: datetime) -> list[ImportBatch]:
    """Imports created before `before` that still hold staged rows or stored bytes."""
    return list(
        session.scalars(
            select(ImportBatch)
            .where(
                ImportBatch.created_at < before,
                ImportBatch.status.in_(("staged", "failed", "cancelled")),
            )
            .order_by(ImportBatch.id)
        )
    )


def purge_older_than(
    session: BackofficeSession, before: datetime, *, dry_run: bool
) -> list[ImportBatch]:
    """Purge every import created before `before` (see `purge`); returns them, oldest first.
    `dry_run`: only say which, touching nothing."""
    batches = purgeable(session, before)
    if not dry_run:
        for batch in batches:
            purge(session, batch)
    return batches
