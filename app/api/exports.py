"""/api/exports: write a dataset out for a customer, follow it, download it."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, send_file
from flask_login import current_user

from app.api.body import json_body
from app.api.jobs import audit_bulk_action, queued, with_job
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.exports import service as exports

bp = Blueprint("exports", __name__, url_prefix="/api/exports")


@bp.post("")
@allow("operator")
def create_export():
    body = json_body(
        allowed={"dataset", "customer_id", "format", "neutralize_formulas"},
        required={"dataset", "customer_id"},
    )
    bo = current_backoffice()
    db = db_session()
    export = exports.create(
        db,
        bo.references,
        dataset=body["dataset"],
        customer_id=body["customer_id"],
        format=body.get("format", "csv"),
        neutralize_formulas=body.get("neutralize_formulas", False),
        created_by=current_user.user_id,
        max_attempts=bo.settings.job_max_attempts,
    )
    return queued(db, "export", export)


@bp.get("/<int:export_id>")
@allow("viewer")
def get_export(export_id: int):
    db = db_session()
    return jsonify(with_job(db, "export", exports.get(db, export_id)))


@bp.get("/<int:export_id>/download")
@allow("viewer")
def download(export_id: int):
    return send_download(export_id)


def send_download(export_id: int) -> Response:
    """The export's file, streamed as an attachment: for this route and the export's page."""
    db = db_session()
    ready = exports.ready_download(db, current_backoffice(), export_id)
    export = ready.export
    try:  # recorded before a byte is sent: a download the log does not show never happens
        audit_bulk_action(
            db,
            "export.download",
            "export",
            export.id,
            customer_id=export.customer_id,
            dataset=export.dataset,
        )
    except BaseException:
        ready.handle.close()
        raise
    response = send_file(
        ready.handle, mimetype=ready.mimetype, as_attachment=True, download_name=ready.name
    )
    response.content_length = ready.size
    response.headers["Cache-Control"] = "private, no-store"  # a customer's data
    return response
