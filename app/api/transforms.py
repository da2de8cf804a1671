"""/api/transforms and /api/datasets: cast a staged import into a dataset, see the datasets."""

from __future__ import annotations

from flask import Blueprint, jsonify
from flask_login import current_user

from app.api.body import json_body
from app.api.jobs import queued, with_job
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.datasets import DATASETS
from app.db.session import db_session
from app.errors import APIError
from app.transforms import service as transforms

bp = Blueprint("transforms", __name__)


@bp.get("/api/datasets")
@allow("viewer")
def list_datasets():
    return jsonify(datasets=[d.as_dict() for d in DATASETS.values()])


@bp.post("/api/transforms")
@allow("operator")
def create_transform():
    body = json_body(
        allowed={"import_id", "dataset", "mapping", "max_rejects", "dry_run"},
        required={"import_id", "dataset"},
    )
    bo = current_backoffice()
    db = db_session()
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise APIError("dry_run must be true or false", code="invalid_field", status=422)
    if dry_run:  # nothing is created: no job, no audit entry
        found = transforms.preview(
            db,
            bo.references,
            import_id=body["import_id"],
            dataset=body["dataset"],
            mapping=body.get("mapping"),
            max_rejects=body.get("max_rejects"),
        )
        return jsonify(preview=found.as_dict())
    transform = transforms.create(
        db,
        bo.references,
        import_id=body["import_id"],
        dataset=body["dataset"],
        mapping=body.get("mapping"),
        max_rejects=body.get("max_rejects"),
        created_by=current_user.user_id,
        max_attempts=bo.settings.job_max_attempts,
    )
    return queued(db, "transform", transform)


@bp.get("/api/transforms/<int:transform_id>")
@allow("viewer")
def get_transform(transform_id: int):
    db = db_session()
    return jsonify(with_job(db, "transform", transforms.get(db, transform_id)))
