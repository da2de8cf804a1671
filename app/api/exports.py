"""/api/exports: write a dataset out for a customer, follow it, download it."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, jsonify, send_file
from flask_login import current_user
from pydantic import Field

from app.api.boundary import Body, Limit, Offset, Query, Text, takes
from app.api.jobs import audit_bulk_action, named, queued, with_job
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.exports import service as exports
from app.exports.service import FORMATS

bp = Blueprint("exports", __name__, url_prefix="/api/exports")


class NewExport(Body):
    refusal_codes = {"customer_id": "invalid_customer_id"}
    dataset: Text = Field(description="a name from GET /api/datasets")
    customer_id: int
    format: Literal[FORMATS] = "csv"  # type: ignore[valid-type]
    neutralize_formulas: bool = Field(
        default=False, description="prefix cells a spreadsheet would run as a formula with '"
    )


@bp.post("")
@allow("operator")
@takes(body=NewExport)
def create_export(body: NewExport):
    bo = current_backoffice()
    db = db_session()
    export = exports.create(
        db,
        bo.references,
        dataset=body.dataset,
        customer_id=body.customer_id,
        format=body.format,
        neutralize_formulas=body.neutralize_formulas,
        created_by=current_user.user_id,
        max_attempts=bo.settings.job_max_attempts,
    )
    return queued(db, "export", export)


class ExportList(Query):
    customer_id: Offset | None = None
    limit: Limit = 100


@bp.get("")
@allow("viewer")
@takes(query=ExportList)
def list_exports(query: ExportList):
    """Newest first, with the customer and the user each is for."""
    db = db_session()
    rows = exports.list_exports(db, customer_id=query.customer_id or None, limit=query.limit)
    return jsonify(exports=named(db, [e.as_dict() for e in rows]))


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
