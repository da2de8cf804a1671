"""Imports: the list, an upload, and an import's page (live progress, staged rows, errors)."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import FileField, SelectField
from wtforms.validators import InputRequired, ValidationError

from app.api.jobs import commit_created
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.customers import service as customers
from app.datasets import DATASETS
from app.db.session import db_session
from app.errors import Refused
from app.imports import service as imports
from app.jobs import queue
from app.models.data.workspace import ImportBatch
from app.transforms import service as transforms
from app.web.forms import PageForm, active_customer_options, options
from app.web.pages import bp, job_fragment, page_number
from app.web.transforms import TransformForm, transform_form, transform_section

PAGE_SIZE = 50
DELIMITER_CHOICES = [
    ("", "Detect from the header"),
    ("comma", "Comma ,"),
    ("semicolon", "Semicolon ;"),
    ("tab", "Tab"),
    ("pipe", "Pipe |"),
]


class UploadForm(PageForm):
    customer = SelectField("Customer", [InputRequired(message="Choose a customer.")])
    file = FileField("File")
    encoding = SelectField(
        "Encoding",
        choices=options(
            [
                ("", "UTF-8 (with or without BOM)"),
                ("latin-1", "Latin-1 (ISO-8859-1)"),
                ("windows-1252", "Windows-1252"),
                ("iso-8859-15", "ISO-8859-15"),
            ]
        ),
    )
    delimiter = SelectField("Delimiter", choices=options(DELIMITER_CHOICES))

    refusal_fields = {
        "unknown_customer": "customer",
        "inactive_customer": "customer",
        "upload_too_large": "file",
        "empty_file": "file",
    }

    def validate_file(self, field) -> None:
        if not getattr(field.data, "filename", None):
            raise ValidationError("Choose a CSV file.")


@bp.get("/imports")
@allow("viewer")
def imports_list():
    db = db_session()
    rows = imports.list_imports(db, limit=100)
    return render_template(
        "imports/list.html",
        title="Imports",
        imports=rows,
        customers=customers.customers_by_id(db, (r.customer_id for r in rows)),
    )


@bp.route("/imports/new", methods=["GET", "POST"])
@allow("operator", upload=True)
def new_import():
    db = db_session()
    form = UploadForm()
    form.customer.choices = active_customer_options(db)
    if request.method == "GET" and request.args.get("customer"):
        form.customer.data = request.args["customer"]
    if form.submitted and form.validate():
        bo = current_backoffice()
        upload = form.file.data
        try:
            batch = imports.receive(
                db,
                bo.references,
                customer_id=int(form.customer.data),
                created_by=current_user.user_id,
                file_name=upload.filename,
                stream=upload.stream,
                size_limit=bo.settings.max_upload_bytes,
                encoding=form.encoding.data or None,
                delimiter=form.delimiter.data or None,
                max_attempts=bo.settings.job_max_attempts,
            )
        except Refused as exc:
            db.rollback()
            form.refused(exc)
        else:
            commit_created(db, "import", batch)
            flash(f"{batch.file_name} uploaded: staging has started.", "success")
            return redirect(url_for("web.import_page", import_id=batch.id))
    return render_template(
        "imports/new.html",
        title="New import",
        form=form,
        max_upload=current_backoffice().settings.max_upload_bytes,
    )


@bp.get("/imports/<int:import_id>")
@allow("viewer")
def import_page(import_id: int):
    db = db_session()
    batch = imports.get_import(db, import_id)
    return render_import_page(db, batch, **transform_section(batch))


def render_import_page(db, batch, **transform_parts):
    """The import's page; `transform_parts`: its transform form, preview and transforms."""
    job = queue.get_job(db, batch.job_id) if batch.job_id else None
    page = page_number()
    rows = []
    if batch.status == "staged":
        rows = imports.staged_rows(db, batch, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    return render_template(
        "imports/show.html",
        title=f"Import #{batch.id}",
        batch=batch,
        job=job,
        customer=customers.customers_by_id(db, [batch.customer_id]).get(batch.customer_id),
        rows=rows,
        page=page,
        pages=max(1, -(-(batch.rows_staged or 0) // PAGE_SIZE)),
        poll_url=url_for("web.import_progress", import_id=batch.id),
        **transform_parts,
    )


@bp.post("/imports/<int:import_id>/transform")
@allow("operator")
def transform_import(import_id: int):
    """Transform (queue the job, then its page) or Preview (the dry run, shown on the form)."""
    db = db_session()
    batch = imports.get_import(db, import_id)
    header = batch.header or []
    dataset = DATASETS.get(request.form.get("dataset", ""))
    form = transform_form(dataset or transforms.likely_dataset(header), header)
    if dataset is None:
        form.form_errors.append("Choose a dataset.")
    elif form.validate():
        try:
            if request.form.get("action") == "preview":
                return _preview(batch, form)
            record = transforms.create(
                db,
                current_backoffice().references,
                import_id=batch.id,
                dataset=dataset.name,
                mapping=form.mapping(),
                match_names=False,
                max_rejects=form.max_rejects.data,
                created_by=current_user.user_id,
                max_attempts=current_backoffice().settings.job_max_attempts,
            )
        except Refused as exc:
            db.rollback()
            form.refused(exc)
        else:
            commit_created(db, "transform", record)
            flash(
                f"Transform #{record.id} started: {batch.file_name} into {record.dataset}.",
                "success",
            )
            return redirect(url_for("web.transform_page", transform_id=record.id))
    return render_import_page(db, batch, **transform_section(batch, form))


def _preview(batch: ImportBatch, form: TransformForm):
    """The dry run, answered on the form itself: nothing was created, so nothing to redirect
    to, and the operator adjusts the mapping right there."""
    db = db_session()
    found = transforms.preview(
        db,
        current_backoffice().references,
        import_id=batch.id,
        dataset=form.dataset.data,
        mapping=form.mapping(),
        match_names=False,
        max_rejects=form.max_rejects.data,
    )
    db.rollback()
    return render_import_page(db, batch, **transform_section(batch, form, found))


@bp.get("/imports/<int:import_id>/rows/<int:row>/columns/<int:column>")
@allow("viewer")
def import_cell(import_id: int, row: int, column: int):
    """A staged cell's whole value, as a text file (the page shows long ones cut)."""
    db = db_session()
    batch = imports.get_import(db, import_id)
    pieces = imports.whole_cell(db, current_backoffice().engines, batch, row, column)
    return Response(
        pieces,
        mimetype="text/plain; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="import-{batch.id}-row-{row}-'
            f'column-{column}.txt"'
        },
    )


@bp.get("/imports/<int:import_id>/progress")
@allow("viewer")
def import_progress(import_id: int):
    """The progress fragment htmx polls; once the job has ended, the page reloads whole."""
    db = db_session()
    batch = imports.get_import(db, import_id)
    return job_fragment(queue.get_job(db, batch.job_id) if batch.job_id else None)
