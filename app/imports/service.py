"""Imports: receiving a file, reading staged rows and their errors, purging them.

Receiving checks the customer (the cross-engine reference check), stores the upload's bytes in
`workspace.import_files` (so a worker on any host can read them) and queues an import job; the
job itself, which stages the file, is `app/imports/job.py`.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
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


def staged_rows(
    session: BackofficeSession, batch: ImportBatch, *, offset: int, limit: int
) -> list[dict[str, Any]]:
    """Rows `offset + 1` to `offset + limit`, keyed by header, with their source lines."""
    require_staged(session, batch)
    names = batch.header or []
    query = sql.SQL(
        "SELECT {line}, {values} FROM {staging} s WHERE rec > %s AND rec <= %s ORDER BY rec"
    ).format(
        line=line_of(batch.id, sql.SQL("s.rec")),
        values=sql.SQL(", ").join(sql.Identifier(f"c{n}") for n in range(1, len(names) + 1))
        if names
        else sql.SQL("NULL"),
        staging=sql.Identifier("workspace", batch.staging_table),
    )
    cursor = session.connection_for("data").connection.dbapi_connection.cursor()
    cursor.execute(query, (offset, offset + limit))
    return [
        {"line": row[0], "values": dict(zip(names, row[1:], strict=False))}
        for row in cursor.fetchall()
    ]


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
