"""Transforms: an import's staged text cast into a dataset's reference table for its customer.

Here: the mapping of columns to headers, what a transform refuses before any work, creating
one with its job, the preview, and reading transforms and their rejected rows. The job that
casts and publishes is `app/transforms/job.py`. Readers of `reference` see the whole transform
or none of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, text

from app.datasets import DATASETS
from app.datasets.base import Dataset
from app.db.session import BackofficeSession
from app.errors import Refused
from app.imports.staged import require_staged
from app.jobs import queue
from app.models.data.workspace import ImportBatch, Transform, TransformError
from app.transforms import changes
from app.transforms.sql import Plan

# A preview casts this many rows at most, in the request that asks (docs/DATASETS.md), and
# lists the refused values of the first PREVIEW_REJECTS refused rows.
PREVIEW_ROWS = 10_000
PREVIEW_REJECTS = 20
PREVIEW_CHANGES = 50  # stored rows shown value by value, of those the preview would change
COUNTS = ("inserted", "updated", "unchanged", "rejected", "superseded")
REJECT_COLUMNS = ("_line", "_column", "_reason")  # what a rejects file adds (rejects.py)


def normalize(name: str) -> str:
    """Header matching ignores case, spaces, dashes and underscores."""
    return re.sub(r"[\s_\-]+", "", name.lower())


def by_name(dataset: Dataset, header: list[str]) -> dict[str, str]:
    """The default mapping: each column takes the first header of the same normalized name."""
    by_normal: dict[str, str] = {}
    for head in header:
        if head in REJECT_COLUMNS:  # a rejects file sent back: its notes are not data
            continue
        by_normal.setdefault(normalize(head), head)
    return {
        f.name: by_normal[normalize(f.name)]
        for f in dataset.fields
        if normalize(f.name) in by_normal
    }


def likely_dataset(header: list[str]) -> Dataset:
    """The dataset whose columns the most headers match (the first declared on a tie)."""
    return max(DATASETS.values(), key=lambda d: len(by_name(d, header)))


def resolve_mapping(
    dataset_name: str,
    header: list[str],
    explicit: dict[str, str | None] | None,
    *,
    match_names: bool = True,
) -> tuple[dict[str, str | None], list[str]]:
    """(field -> header name, or None for a column cleared on purpose; extra headers).
    Refuses unknown fields or headers, clearing a key or required column, and required fields
    that nothing maps, naming them, before any work starts. A column that is neither mapped
    nor cleared keeps its stored value on the rows the transform updates
    (docs/DATASETS.md). `match_names=False`: the explicit mapping is the whole mapping (a form
    that lists every column, some left unmapped on purpose)."""
    dataset = DATASETS.get(dataset_name)
    if dataset is None:
        raise Refused(
            f"unknown dataset {dataset_name!r}; known: {', '.join(DATASETS)}",
            code="unknown_dataset",
            status=422,
        )
    fields = {f.name: f for f in dataset.fields}
    mapping: dict[str, str | None] = {}
    for field, head in (explicit or {}).items():
        if field not in fields:
            raise Refused(
                f"mapping names {field!r}, which is not a column of {dataset.name}",
                code="invalid_mapping",
                status=422,
            )
        if head is None and (field in dataset.key or fields[field].required):
            what = "key" if field in dataset.key else "required"
            raise Refused(
                f"{field} is a {what} column of {dataset.name}: it cannot be cleared",
                code="invalid_mapping",
                status=422,
            )
        if head is not None and head not in header:
            raise Refused(
                f"mapping names header {head!r}, which the file does not have",
                code="invalid_mapping",
                status=422,
            )
        mapping[field] = head
    if match_names:
        for name, head in by_name(dataset, header).items():
            mapping.setdefault(name, head)
    missing = [f.name for f in dataset.fields if f.required and mapping.get(f.name) is None]
    if missing:
        raise Refused(
            f"required column(s) {', '.join(missing)} of {dataset.name} match no header of the "
            f"file ({', '.join(header)}); map them with column=header",
            code="unmapped_columns",
            status=422,
        )
    used = set(mapping.values())
    return mapping, [h for h in header if h not in used]


def _checked(
    session: BackofficeSession,
    references,
    *,
    import_id: int,
    dataset: str,
    mapping: dict[str, str | None] | None,
    max_rejects: int | None,
    match_names: bool,
) -> tuple[ImportBatch, dict[str, str | None], list[str]]:
    """What a transform and its preview both refuse before any work: (the staged import, the
    mapping, the extra headers)."""
    if max_rejects is not None and not 0 <= max_rejects < 2**63:  # a bigint column
        raise Refused(
            "max_rejects must be a whole number of at least 0", code="invalid_field", status=422
        )
    batch = session.get_or_404(ImportBatch, import_id, "import")
    require_staged(session, batch)
    references.customer(session, batch.customer_id)
    resolved, extra = resolve_mapping(dataset, batch.header or [], mapping, match_names=match_names)
    return batch, resolved, extra


def create(
    session: BackofficeSession,
    references,
    *,
    import_id: int,
    dataset: str,
    mapping: dict[str, str | None] | None = None,
    max_rejects: int | None = None,
    created_by: int | None,
    max_attempts: int = 3,
    match_names: bool = True,
) -> Transform:
    batch, resolved, extra = _checked(
        session,
        references,
        import_id=import_id,
        dataset=dataset,
        mapping=mapping,
        max_rejects=max_rejects,
        match_names=match_names,
    )
    transform = Transform(
        import_id=batch.id,
        dataset=dataset,
        customer_id=batch.customer_id,
        created_by=created_by,
        mapping=resolved,
        extra_headers=extra,
        max_rejects=max_rejects,
    )
    session.add(transform)
    session.flush()
    queue.enqueue_for(
        session, transform, "transform", {"transform_id": transform.id}, max_attempts=max_attempts
    )
    return transform


@dataclass
class Preview:
    """What a transform of the first `rows` staged rows would do, and its first refusals."""

    import_id: int
    dataset: str
    mapping: dict[str, str | None]
    extra_headers: list[str]
    rows: int  # staged rows previewed
    rows_staged: int
    counts: dict[str, int]
    rejects: list[dict[str, Any]]  # line, column, value, reason of the first rejected rows
    max_rejects: int | None
    columns: dict[str, list[str]]  # written, cleared, untouched (Dataset.column_use)
    changed_columns: dict[str, int]  # per field an update writes: stored values that change
    changes: list[dict[str, Any]]  # line, key, fields {name: {from, to}} of the first changes

    @property
    def complete(self) -> bool:
        return self.rows >= self.rows_staged

    @property
    def over_max_rejects(self) -> bool:
        return self.max_rejects is not None and self.counts["rejected"] > self.max_rejects

    def as_dict(self) -> dict[str, Any]:
        return {
            "import_id": self.import_id,
            "dataset": self.dataset,
            "mapping": self.mapping,
            "extra_headers": self.extra_headers,
            "rows_previewed": self.rows,
            "rows_staged": self.rows_staged,
            "complete": self.complete,
            **self.counts,
            "over_max_rejects": self.over_max_rejects,
            "rejects": self.rejects,
            "columns": self.columns,
            "changed_columns": self.changed_columns,
            "changes": self.changes,
        }


def preview(
    session: BackofficeSession,
    references,
    *,
    import_id: int,
    dataset: str,
    mapping: dict[str, str | None] | None = None,
    max_rejects: int | None = None,
    match_names: bool = True,
) -> Preview:
    """A dry run: the transform's own cast, checks and counting of the first PREVIEW_ROWS
    staged rows, in a savepoint that is rolled back. Nothing is written anywhere: the cast rows
    go to a temporary table dropped with the savepoint, and the upsert's outcome is counted
    against the stored rows instead of being run."""
    batch, resolved, extra = _checked(
        session,
        references,
        import_id=import_id,
        dataset=dataset,
        mapping=mapping,
        max_rejects=max_rejects,
        match_names=match_names,
    )
    total = batch.rows_staged or 0
    rows = min(total, PREVIEW_ROWS)
    plan = plan_for(batch, DATASETS[dataset], resolved, f"preview_{batch.id}", temporary=True)
    conn = session.connection_for("data")
    refusal = server_refusal(conn)
    if refusal:
        raise Refused(refusal, code="unsupported_server", status=503)
    cursor = conn.connection.dbapi_connection.cursor()
    cursor.execute("SAVEPOINT preview")
    try:
        cursor.execute("SET LOCAL timezone = 'UTC'")  # undone with the savepoint
        cursor.execute(plan.typed_table())
        rejected = cursor.execute(plan.cast_batch(), (0, rows)).fetchone()[0]
        inserted, updated, distinct, *per = cursor.execute(
            changes.would_write(plan, batch.customer_id)
        ).fetchone()
        changed = cursor.execute(changes.changed_rows(plan, batch.customer_id, PREVIEW_CHANGES))
        listed = _changes(plan, changed)
        rejects = [
            {"line": line, "column": column, "value": value, "reason": reason}
            for line, column, value, reason in cursor.execute(plan.refusals(PREVIEW_REJECTS))
        ]
    finally:
        cursor.execute("ROLLBACK TO SAVEPOINT preview")
        cursor.execute("RELEASE SAVEPOINT preview")
    return Preview(
        import_id=batch.id,
        dataset=dataset,
        mapping=resolved,
        extra_headers=extra,
        rows=rows,
        rows_staged=total,
        counts={
            "inserted": inserted,
            "updated": updated,
            "unchanged": distinct - inserted - updated,
            "rejected": rejected,
            "superseded": rows - rejected - distinct,
        },
        rejects=rejects,
        max_rejects=max_rejects,
        columns=DATASETS[dataset].column_use(resolved),
        changed_columns=dict(zip(plan.updates, per, strict=True)),
        changes=listed,
    )


def _changes(plan: Plan, rows) -> list[dict[str, Any]]:
    """`changed_rows` as the preview shows them: each field that changes, from and to."""
    key, updates = plan.dataset.key, plan.updates
    found = []
    for line, *values in rows:
        triples = values[len(key) :]
        fields = {
            name: {"from": triples[3 * n], "to": triples[3 * n + 1]}
            for n, name in enumerate(updates)
            if triples[3 * n + 2]
        }
        found.append({"line": line, "key": dict(zip(key, values, strict=False)), "fields": fields})
    return found


def plan_for(
    batch, dataset: Dataset, mapping: dict[str, str | None], typed: str, *, temporary: bool = False
) -> Plan:
    """The statements that cast `batch`'s staged text into `typed` and write it out."""
    header = batch.header or []
    return Plan(
        dataset,
        batch.id,
        {f: header.index(h) + 1 for f, h in mapping.items() if h is not None},
        typed=typed,
        cleared=frozenset(f for f, h in mapping.items() if h is None),
        temporary=temporary,
    )


def server_refusal(conn: Connection, *, counting: bool = False) -> str | None:
    """Why the data server cannot run a transform, or None. `counting`: the real run counts
    its inserts with the server's statistics; a preview does not."""
    if int(conn.execute(text("SHOW server_version_num")).scalar()) < 160000:
        return "transforms need PostgreSQL 16 or newer on the data engine"
    if counting and not conn.execute(text("SELECT current_setting('track_counts')::bool")).scalar():
        return (
            "transforms count inserted rows with the server's statistics: set "
            "track_counts = on on the data engine (autovacuum needs it too)"
        )
    return None


def list_transforms(
    session: BackofficeSession,
    *,
    customer_id: int | None = None,
    import_id: int | None = None,
    limit: int = 100,
) -> list[Transform]:
    query = select(Transform).order_by(Transform.id.desc()).limit(limit)
    if customer_id:
        query = query.where(Transform.customer_id == customer_id)
    if import_id:
        query = query.where(Transform.import_id == import_id)
    return list(session.scalars(query))


def get(session: BackofficeSession, transform_id: int) -> Transform:
    return session.get_or_404(Transform, transform_id, "transform")


def of_import(session: BackofficeSession, import_id: int) -> list[Transform]:
    """An import's transforms, newest first."""
    query = select(Transform).where(Transform.import_id == import_id)
    return list(session.scalars(query.order_by(Transform.id.desc())))


def errors_of_import(
    session: BackofficeSession, import_id: int, *, offset: int, limit: int
) -> tuple[list[TransformError], int]:
    return _errors(
        session,
        TransformError.import_id == import_id,
        TransformError.transform_id.desc(),
        offset=offset,
        limit=limit,
    )


def errors_of_transform(
    session: BackofficeSession, transform_id: int, *, offset: int, limit: int
) -> tuple[list[TransformError], int]:
    return _errors(session, TransformError.transform_id == transform_id, offset=offset, limit=limit)


def _errors(session, where, *order, offset: int, limit: int) -> tuple[list[TransformError], int]:
    query = select(TransformError).where(where)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.order_by(*order, TransformError.line, TransformError.id).offset(offset).limit(limit)
    )
    return list(rows), total
