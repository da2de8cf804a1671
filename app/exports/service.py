"""Exports: a dataset's rows for one customer, as a CSV file; here creating one with its job,
reading them, and serving a finished export's file.

API exports go under `EXPORT_DIR` with a generated name (never one taken from the user); the
CLI writes where it is told. The job that writes the file is `app/exports/job.py`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import Connection, select, text

from app.datasets import DATASETS
from app.db.session import BackofficeSession
from app.errors import NotFound, Refused
from app.jobs import paths, queue
from app.jobs.runner import JobFailed
from app.models.data.workspace import Export

log = logging.getLogger(__name__)
FORMATS = ("csv", "csv.gz")


def export_dir(settings, instance_path: str) -> Path:
    return Path(settings.export_dir or Path(instance_path) / "exports")


def remove_files(conn: Connection, folder: Path, rows: Iterable[Any]) -> None:
    """Remove the files of these exports (rows of `id`, `file_name`) and clear their names.
    A stored name leading outside EXPORT_DIR is a data-engine value we do not trust: its name
    is cleared, nothing is removed. The caller commits after: a crash in between leaves a row
    naming a missing file (its download answers 410), never a file nothing names."""
    rows = list(rows)
    for export_id, file_name in rows:
        try:
            path = paths.checked(str(folder / file_name), [folder], (), what="export file")
        except JobFailed as refused:
            log.warning("export %s: %s", export_id, refused)
            continue
        # A symbolic link is removed, never followed; a file never written (its folder may not
        # even be one) is already gone.
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            path.unlink()
    conn.execute(
        text("UPDATE workspace.exports SET file_name = NULL WHERE id = ANY(:ids)"),
        {"ids": [row[0] for row in rows]},
    )


def create(
    session: BackofficeSession,
    references,
    *,
    dataset: str,
    customer_id: int,
    format: str = "csv",
    created_by: int | None,
    output: str | None = None,
    neutralize_formulas: bool = False,
    max_attempts: int = 3,
) -> Export:
    if dataset not in DATASETS:
        raise Refused(
            f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}",
            code="unknown_dataset",
            status=422,
        )
    if format not in FORMATS:
        raise Refused("format must be csv or csv.gz", code="invalid_field", status=422)
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
    queue.enqueue_for(session, export, "export", params, max_attempts=max_attempts)
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
    export = get(session, export_id)
    if export.status == "succeeded" and not export.file_name:
        raise Refused(
            f"export {export_id} has no file to download: export files are removed "
            f"{bo.settings.prune_export_files_days} days after they are made "
            "(PRUNE_EXPORT_FILES_DAYS), and the command line writes its own; export again",
            code="file_removed",
            status=410,
        )
    if export.status != "succeeded":
        raise Refused(
            f"export {export_id} is {export.status}, not ready", code="not_ready", status=409
        )
    customer = bo.references.lookup(session, "customer", export.customer_id)
    if not customer.exists:
        raise NotFound(f"no export with id {export_id}")
    handle = open_download(bo, export)
    return Download(
        export=export,
        handle=handle,
        name=f"{export.dataset}-{customer.label}-{export.id}.{export.format}",
        mimetype="application/gzip" if export.format == "csv.gz" else "text/csv",
        size=os.fstat(handle.fileno()).st_size,
    )


def open_download(bo, export: Export) -> BinaryIO:
    """The export's file for a download: its stored name is a data-engine value, so it must
    lead inside EXPORT_DIR, and a symbolic link there is not followed."""
    folder = export_dir(bo.settings, bo.instance_path)
    try:
        path = paths.checked(
            str(folder / (export.file_name or "")), [folder], (), what="export file"
        )
        handle = os.fdopen(paths.open_for_reading(path), "rb")
    except JobFailed:
        raise Refused(
            "the export's file is not on this host (EXPORT_DIR must be shared between hosts)",
            code="file_missing",
            status=404,
        ) from None
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise Refused("the export's file is not a file", code="file_missing", status=404)
    return handle
