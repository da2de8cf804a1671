"""/api/transforms and /api/datasets: cast a staged import into a dataset, see the datasets."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from flask_login import current_user
from pydantic import Field

from app.api.boundary import Body, Limit, Offset, Query, Text, takes
from app.api.jobs import audit_bulk_action, named, queued, with_job
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.datasets import DATASETS
from app.db.session import db_session
from app.errors import NotFound
from app.models.data.workspace import ImportBatch
from app.transforms import history, rejects, revert
from app.transforms import service as transforms

bp = Blueprint("transforms", __name__)


@bp.get("/api/datasets")
@allow("viewer")
def list_datasets():
    return jsonify(datasets=[d.as_dict() for d in DATASETS.values()])


class NewTransform(Body):
    """Cast a staged import into a dataset. Columns match headers by name unless `mapping`
    says otherwise (a column mapped to null is cleared on updated rows; a column nothing maps
    keeps its stored value); `dry_run` previews the first rows and creates nothing."""

    import_id: int
    dataset: Text = Field(description="a name from GET /api/datasets")
    mapping: dict[str, str | None] | None = Field(
        default=None, description="column: header, or null to clear the column"
    )
    max_rejects: Offset | None = Field(default=None, description="fail past this many rejects")
    dry_run: bool = False


@bp.post("/api/transforms")
@allow("operator")
@takes(body=NewTransform)
def create_transform(body: NewTransform):
    bo = current_backoffice()
    db = db_session()
    asked = {
        "import_id": body.import_id,
        "dataset": body.dataset,
        "mapping": body.mapping,
        "max_rejects": body.max_rejects,
    }
    if body.dry_run:  # nothing is created: no job, no audit entry
        found = transforms.preview(db, bo.references, **asked)
        return jsonify(preview=found.as_dict())
    transform = transforms.create(
        db,
        bo.references,
        **asked,
        created_by=current_user.user_id,
        max_attempts=bo.settings.job_max_attempts,
    )
    return queued(db, "transform", transform)


class TransformList(Query):
    customer_id: Offset | None = None
    import_id: Offset | None = None
    limit: Limit = 100


@bp.get("/api/transforms")
@allow("viewer")
@takes(query=TransformList)
def list_transforms(query: TransformList):
    """Newest first, with the customer and the user each is for."""
    db = db_session()
    rows = transforms.list_transforms(
        db,
        customer_id=query.customer_id or None,
        import_id=query.import_id or None,
        limit=query.limit,
    )
    return jsonify(transforms=named(db, [t.as_dict() for t in rows]))


@bp.get("/api/transforms/<int:transform_id>")
@allow("viewer")
def get_transform(transform_id: int):
    db = db_session()
    return jsonify(with_job(db, "transform", transforms.get(db, transform_id)))


@bp.post("/api/transforms/<int:transform_id>/revert")
@allow("operator")
def revert_transform(transform_id: int):
    """Queue the revert of a published transform: 202 with the revert's own transform record
    and its job; 409 `revert_conflict` (naming them) while later transforms changed the same
    rows, `already_reverted`, `history_expired`, `not_revertible`."""
    bo = current_backoffice()
    db = db_session()
    made = revert.create(
        db,
        bo.references,
        transform_id=transform_id,
        history_days=bo.settings.transform_history_days,
        created_by=current_user.user_id,
        max_attempts=bo.settings.job_max_attempts,
    )
    return queued(db, "transform", made, "transform.revert")


def _dataset(name: str):
    found = DATASETS.get(name)
    if found is None:
        raise NotFound(f"there is no dataset {name!r}; known: {', '.join(DATASETS)}")
    return found


def _known_customer(db, customer_id: int) -> None:
    """Any customer that exists, active or not: its rows stay readable."""
    if not current_backoffice().references.lookup(db, "customer", customer_id).exists:
        raise NotFound(f"there is no customer with id {customer_id}")


class RowsQuery(Query):
    limit: Limit = 50
    after: Text | None = Field(default=None, description="the `next` of the previous page")
    q: Text | None = Field(default=None, description="the key's first column starts with it")
    customer_id: Offset


@bp.get("/api/datasets/<name>/rows")
@allow("viewer")
@takes(query=RowsQuery)
def dataset_rows(name: str, query: RowsQuery):
    """A customer's rows of a dataset in key order, keyset-paged: `next` is the cursor of the
    following page (`after`), absent on the last."""
    dataset = _dataset(name)
    db = db_session()
    _known_customer(db, query.customer_id)
    rows, last = history.rows_page(
        db.connection_for("data"),
        dataset,
        query.customer_id,
        limit=query.limit,
        after=query.after,
        starts=query.q,
    )
    return jsonify(
        rows=[history.shown(r) for r in rows],
        next=history.encode_cursor(last) if last else None,
    )


class HistoryQuery(Query):
    """The key's columns are query parameters of their own names, every one given (empty for
    a key column left empty)."""

    customer_id: Offset


@bp.get("/api/datasets/<name>/history")
@allow("viewer")
@takes(query=HistoryQuery)
def row_history(name: str, query: HistoryQuery):
    """One row's versions, newest first, each with its values and the transform, import and
    user it came from."""
    dataset = _dataset(name)
    db = db_session()
    _known_customer(db, query.customer_id)
    key = history.key_from(dataset, request.args)
    found = history.versions(db.connection_for("data"), dataset, query.customer_id, key)
    if not found:
        raise NotFound(f"customer {query.customer_id} has no {dataset.name} row with that key")
    found = history.attributed(db, current_backoffice().references, found)
    return jsonify(key=key, versions=[history.shown(v) for v in found])


@bp.get("/api/transforms/<int:transform_id>/rejects.csv")
@allow("viewer")
def transform_rejects(transform_id: int):
    """The rejected rows as a CSV to fix and import again: the import's columns as staged,
    then `_line`, `_column`, `_reason`. Audited as `transform.rejects_download`."""
    return send_rejects(transform_id)


def send_rejects(transform_id: int) -> Response:
    """The rejects file, streamed as an attachment: for this route and the transform's page."""
    db = db_session()
    record = transforms.get(db, transform_id)
    batch = db.get_or_404(ImportBatch, record.import_id, "import")
    pieces = rejects.rejects_csv(db, current_backoffice().engines, record, batch)
    # Recorded before a byte is sent, as an export's download.
    audit_bulk_action(
        db,
        "transform.rejects_download",
        "transform",
        record.id,
        customer_id=record.customer_id,
        import_id=record.import_id,
    )
    return Response(
        pieces,
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{rejects.file_name(record)}"',
            "Cache-Control": "private, no-store",  # a customer's data
        },
    )
