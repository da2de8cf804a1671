"""/api/imports: upload a CSV file for a customer, follow its staging, read what was staged."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, url_for
from flask_login import current_user
from pydantic import Field
from werkzeug.datastructures import FileStorage

from app.api.boundary import Form, Limit, Offset, Page, Query, WholeNumber, takes
from app.api.jobs import named, queued, with_job
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.imports import service as imports

bp = Blueprint("imports", __name__, url_prefix="/api/imports")


class NewImport(Form):
    """The CSV in `file`, for a customer; encoding and delimiter are guessed when not given."""

    refusal_codes = {"customer_id": "invalid_customer_id"}
    files = ("file",)
    customer_id: WholeNumber
    encoding: str | None = Field(default=None, description="e.g. utf-8, latin-1")
    delimiter: str | None = Field(default=None, description="one of , ; | or tab")


class ImportList(Query):
    customer_id: Offset | None = None
    limit: Limit = 100


@bp.post("")
@allow("operator", upload=True)
@takes(form=NewImport)
def create_import(form: NewImport, files: dict[str, FileStorage]):
    """Multipart: `file`, `customer_id`, optional `encoding` and `delimiter`. 202: queued."""
    bo = current_backoffice()
    upload = files["file"]
    db = db_session()
    batch = imports.receive(
        db,
        bo.references,
        customer_id=form.customer_id,
        created_by=current_user.user_id,
        file_name=upload.filename,
        stream=upload.stream,
        size_limit=bo.settings.max_upload_bytes,
        encoding=form.encoding,
        delimiter=form.delimiter,
        max_attempts=bo.settings.job_max_attempts,
    )
    return queued(db, "import", batch)


@bp.get("")
@allow("viewer")
@takes(query=ImportList)
def list_imports(query: ImportList):
    db = db_session()
    rows = imports.list_imports(db, customer_id=query.customer_id or None, limit=query.limit)
    return jsonify(imports=named(db, [b.as_dict() for b in rows]))


@bp.get("/<int:import_id>")
@allow("viewer")
def get_import(import_id: int):
    db = db_session()
    return jsonify(with_job(db, "import", imports.get_import(db, import_id)))


@bp.get("/<int:import_id>/rows")
@allow("viewer")
@takes(query=Page)
def import_rows(import_id: int, query: Page):
    db = db_session()
    batch = imports.get_import(db, import_id)
    offset, limit = query.offset, imports.page_limit(batch, query.limit)
    rows = imports.staged_rows(db, batch, offset=offset, limit=limit)
    for row in rows:  # a cut cell says where its whole value is
        for cut in row["truncated"].values():
            cut["url"] = url_for(
                "imports.import_cell", import_id=batch.id, row=row["row"], column=cut["column"]
            )
    return jsonify(rows=rows, offset=offset, limit=limit, total=batch.rows_staged)


@bp.get("/<int:import_id>/rows/<int:row>/columns/<int:column>")
@allow("viewer")
def import_cell(import_id: int, row: int, column: int):
    """One staged cell's whole value as text/plain (the rows answer cuts long ones), streamed."""
    db = db_session()
    batch = imports.get_import(db, import_id)
    pieces = imports.whole_cell(db, current_backoffice().engines, batch, row, column)
    return Response(pieces, mimetype="text/plain; charset=utf-8")


@bp.get("/<int:import_id>/errors")
@allow("viewer")
@takes(query=Page)
def import_errors(import_id: int, query: Page):
    """Why the import failed (a line, column and message), and the rows its transforms
    rejected (with the value), newest transform first."""
    db = db_session()
    batch = imports.get_import(db, import_id)
    offset, limit = query.offset, query.limit
    errors, total = imports.import_errors(db, batch, offset=offset, limit=limit)
    return jsonify(errors=errors, total=total, offset=offset, limit=limit)
