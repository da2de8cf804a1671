"""The `workspace` schema: jobs; imports with their uploaded files and staged rows; transforms
and their rejected rows; exports.

Staged rows live in one table per import, `workspace.import_<id>` (a `line` column, then one
text column per header field), created by the import job and dropped by the purge; they are not
declared here because their shape is the file's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.datasets import DATASETS
from app.db.base import DataBase, iso

SCHEMA = {"schema": "workspace"}
IMPORT_STATUSES = ("pending", "staged", "failed", "cancelled", "purged")


class Job(DataBase):
    """A unit of bulk work, claimed by any worker under a lease (docs/ARCHITECTURE.md, Jobs)."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="status_valid",
        ),
        # The claim's scan: queued jobs, and running ones whose lease may have run out.
        Index("ix_jobs_claimable", "id", postgresql_where=text("status IN ('queued', 'running')")),
        SCHEMA,
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'queued'"))
    attempt: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    worker_id: Mapped[str | None] = mapped_column(Text)
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    progress_done: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    progress_total: Mapped[int | None] = mapped_column(BigInteger)
    progress_unit: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    customer_id: Mapped[int | None] = mapped_column(BigInteger)  # customer.customers.id
    created_by: Mapped[int | None] = mapped_column(BigInteger)  # config.users.id
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "params": self.params,
            "progress": {
                "done": self.progress_done,
                "total": self.progress_total,
                "unit": self.progress_unit,
            },
            "attempts": self.attempt,
            "max_attempts": self.max_attempts,
            "worker_id": self.worker_id,
            "cancel_requested": self.cancel_requested,
            "error": self.error,
            "result": self.result,
            "customer_id": self.customer_id,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
        }


class ImportBatch(DataBase):
    """One uploaded file, staged as text into `workspace.import_<id>` by its job."""

    __tablename__ = "imports"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'staged', 'failed', 'cancelled', 'purged')",
            name="status_valid",
        ),
        Index("ix_imports_customer_id", "customer_id"),
        SCHEMA,
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)  # customer.customers.id, checked in code
    created_by: Mapped[int | None] = mapped_column(BigInteger)  # config.users.id
    job_id: Mapped[int | None] = mapped_column(ForeignKey("workspace.jobs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    file_name: Mapped[str] = mapped_column(Text)  # as the user named it; shown, never used as path
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(Text)
    encoding: Mapped[str | None] = mapped_column(Text)  # as given, or None to use UTF-8
    delimiter: Mapped[str | None] = mapped_column(Text)  # as given or detected
    header: Mapped[list[str] | None] = mapped_column(JSONB)
    rows_staged: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSONB)  # {line, column, message}
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    staged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @property
    def staging_table(self) -> str:
        return f"import_{self.id}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "created_by": self.created_by,
            "job_id": self.job_id,
            "status": self.status,
            "file_name": self.file_name,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "encoding": self.encoding or "utf-8",
            "delimiter": self.delimiter,
            "header": self.header,
            "rows_staged": self.rows_staged,
            "error": self.error,
            "created_at": iso(self.created_at),
            "staged_at": iso(self.staged_at),
        }


class ImportFile(DataBase):
    """The uploaded bytes, in chunks, so that a worker on any host can read them."""

    __tablename__ = "import_files"
    __table_args__ = SCHEMA

    import_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.imports.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ImportLine(DataBase):
    """Where a staged record starts in its file, for the records where "one line per record"
    breaks: a record's line is its anchor's line plus its distance from the anchor (the last
    anchor at or before it). See `app/imports/lines.py`."""

    __tablename__ = "import_lines"
    __table_args__ = SCHEMA

    import_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.imports.id", ondelete="CASCADE"), primary_key=True
    )
    rec: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    line: Mapped[int] = mapped_column(BigInteger)


class JobBacked:
    """The columns of a record whose work one job does (a transform, an export): for which
    customer, by whom, its job, and how it ended. The job's row holds the attempts and progress;
    the record keeps the outcome after the job is pruned."""

    customer_id: Mapped[int] = mapped_column(BigInteger)  # customer.customers.id, checked in code
    created_by: Mapped[int | None] = mapped_column(BigInteger)  # config.users.id
    job_id: Mapped[int | None] = mapped_column(ForeignKey("workspace.jobs.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Transform(JobBacked, DataBase):
    """One import cast into one dataset; its counts once published."""

    __tablename__ = "transforms"
    __table_args__ = (Index("ix_transforms_import_id", "import_id"), SCHEMA)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    import_id: Mapped[int] = mapped_column(ForeignKey("workspace.imports.id", ondelete="CASCADE"))
    dataset: Mapped[str] = mapped_column(Text)
    # dataset field -> header name, or None: cleared on updated rows; an unmapped field keeps
    # its stored value (docs/DATASETS.md)
    mapping: Mapped[dict[str, str | None]] = mapped_column(JSONB)
    extra_headers: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    max_rejects: Mapped[int | None] = mapped_column(BigInteger)
    counts: Mapped[dict[str, int] | None] = mapped_column(JSONB)
    # A revert is a transform of its own: `reverts_id` names the one it undid, whose
    # `reverted_by_id` names it back while the revert stands (docs/DATASETS.md).
    reverts_id: Mapped[int | None] = mapped_column(BigInteger)  # workspace.transforms.id
    reverted_by_id: Mapped[int | None] = mapped_column(BigInteger)  # workspace.transforms.id
    # False for the transforms published before history was kept (d0008): not revertible.
    keeps_history: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "import_id": self.import_id,
            "dataset": self.dataset,
            "customer_id": self.customer_id,
            "created_by": self.created_by,
            "job_id": self.job_id,
            "mapping": self.mapping,
            # A revert puts whole rows back: it maps no column.
            "columns": None if self.reverts_id else DATASETS[self.dataset].column_use(self.mapping),
            "reverts_id": self.reverts_id,
            "reverted_by_id": self.reverted_by_id,
            "extra_headers": self.extra_headers,
            "max_rejects": self.max_rejects,
            "status": self.status,
            **(self.counts or {}),
            "error": self.error,
            "created_at": iso(self.created_at),
            "finished_at": iso(self.finished_at),
        }

    def column_use(self) -> dict[str, list[str]] | None:
        """Written, cleared, untouched (Dataset.column_use). None for a revert: it puts whole
        rows back. Before history was kept, a transform cleared every column it did not map."""
        dataset = DATASETS[self.dataset]
        if self.reverts_id:
            return None
        if not self.keeps_history:
            return dataset.column_use({f.name: self.mapping.get(f.name) for f in dataset.fields})
        return dataset.column_use(self.mapping)


class TransformError(DataBase):
    """A staged row a transform rejected: where, which field, the value and why."""

    __tablename__ = "transform_errors"
    __table_args__ = (Index("ix_transform_errors_import_line", "import_id", "line"), SCHEMA)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    transform_id: Mapped[int] = mapped_column(
        ForeignKey("workspace.transforms.id", ondelete="CASCADE")
    )
    import_id: Mapped[int] = mapped_column(BigInteger)
    line: Mapped[int] = mapped_column(BigInteger)
    column: Mapped[str] = mapped_column(Text)
    value: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "transform_id": self.transform_id,
            "line": self.line,
            "column": self.column,
            "value": self.value,
            "message": self.reason,
        }


class Export(JobBacked, DataBase):
    """A dataset written out for a customer, to a file under EXPORT_DIR with a made-up name."""

    __tablename__ = "exports"
    __table_args__ = (
        CheckConstraint("format IN ('csv', 'csv.gz')", name="format_valid"),
        SCHEMA,
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    dataset: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(Text)
    # Text cells that a spreadsheet would run as a formula get a leading ' (opt-in: the plain
    # export must read back exactly).
    neutralize_formulas: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    file_name: Mapped[str | None] = mapped_column(Text)  # generated; never the user's
    rows: Mapped[int | None] = mapped_column(BigInteger)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "dataset": self.dataset,
            "customer_id": self.customer_id,
            "created_by": self.created_by,
            "job_id": self.job_id,
            "format": self.format,
            "neutralize_formulas": self.neutralize_formulas,
            "status": self.status,
            "rows": self.rows,
            "size_bytes": self.size_bytes,
            "error": self.error,
            "created_at": iso(self.created_at),
            "finished_at": iso(self.finished_at),
        }
