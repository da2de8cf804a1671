"""/api/transforms and /api/datasets: cast a staged import into a dataset, see the datasets."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import current_user
from pydantic import Field

from app.api.boundary import Body, Limit, Offset, Query, Text, takes
from app.api.jobs import named, queued, with_job
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.datasets import DATASETS
from app.db.session import db_session
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
