"""/api/imports: upload a CSV file for a customer, follow its staging, read what was staged."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask_login import current_user

from app.api.body import query_int
from app.api.jobs import queued, with_job
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.errors import APIError
from app.imports import service as imports

bp = Blueprint("imports", __name__, url_prefix="/api/imports")


@bp.post("")
@allow("operator")
def create_import():
    """Multipart: `file`, `customer_id`, optional `encoding` and `delimiter`. 202: queued."""
    bo = current_backoffice()
    limit = bo.settings.max_upload_bytes
    slack = 16 * 1024  # the form's other fields and the multipart boundaries
    if request.content_length is not None and request.content_length > limit + slack:
        # Refused from the headers alone: nothing of the body is read.
        raise APIError(
            f"the upload is larger than the limit of {limit} bytes",
            code="upload_too_large",
            status=413,
        )
    request.max_content_length = limit + slack
    upload = request.files.get("file")
    if upload is None:
        raise APIError(
            "send the CSV as the multipart field `file`", code="missing_field", status=422
        )
    try:
        customer_id = int(request.form.get("customer_id", ""))
    except ValueError:
        raise APIError(
            "customer_id must be a whole number", code="invalid_customer_id", status=422
        ) from None
    db = db_session()
    batch = imports.receive(
        db,
        bo.references,
        customer_id=customer_id,
        created_by=current_user.user_id,
        file_name=upload.filename,
        stream=upload.stream,
        size_limit=limit,
        encoding=request.form.get("encoding") or None,
        delimiter=request.form.get("delimiter") or None,
        max_attempts=bo.settings.job_max_attempts,
    )
    return queued(db, "import", batch)


@bp.get("")
@allow("viewer")
def list_imports():
    customer_id = query_int("customer_id", 0)
    rows = imports.list_imports(
        db_session(),
        customer_id=customer_id or None,
        limit=query_int("limit", 100, minimum=1, maximum=1000),
    )
    return jsonify(imports=[b.as_dict() for b in rows])


@bp.get("/<int:import_id>")
@allow("viewer")
def get_import(import_id: int):
    db = db_session()
    return jsonify(with_job(db, "import", imports.get_import(db, import_id)))


@bp.get("/<int:import_id>/rows")
@allow("viewer")
def import_rows(import_id: int):
    db = db_session()
    batch = imports.get_import(db, import_id)
    offset = query_int("offset", 0)
    limit = query_int("limit", 100, minimum=1, maximum=1000)
    rows = imports.staged_rows(db, batch, offset=offset, limit=limit)
    return jsonify(rows=rows, offset=offset, limit=limit, total=batch.rows_staged)


@bp.get("/<int:import_id>/errors")
@allow("viewer")
def import_errors(import_id: int):
    """Why the import failed (a line, column and message), and the rows its transforms
    rejected (with the value), newest transform first."""
    db = db_session()
    batch = imports.get_import(db, import_id)
    offset = query_int("offset", 0)
    limit = query_int("limit", 100, minimum=1, maximum=1000)
    errors, total = imports.import_errors(db, batch, offset=offset, limit=limit)
    return jsonify(errors=errors, total=total, offset=offset, limit=limit)
