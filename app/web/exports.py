"""Exports: the list, a new export, an export's page (live progress, then its download)."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import BooleanField, SelectField
from wtforms.validators import InputRequired

from app.api.exports import send_download
from app.api.jobs import commit_created
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.customers import service as customers
from app.datasets import DATASETS
from app.db.session import db_session
from app.errors import Refused
from app.exports import service as exports
from app.jobs import queue
from app.web.forms import PageForm, active_customer_options, options
from app.web.pages import bp, job_fragment


class ExportForm(PageForm):
    dataset = SelectField("Dataset", [InputRequired(message="Choose a dataset.")])
    customer = SelectField("Customer", [InputRequired(message="Choose a customer.")])
    format = SelectField("Format", choices=options((f, f) for f in exports.FORMATS))
    neutralize_formulas = BooleanField("Neutralize spreadsheet formulas")

    refusal_fields = {
        "unknown_dataset": "dataset",
        "unknown_customer": "customer",
        "inactive_customer": "customer",
    }


@bp.get("/exports")
@allow("viewer")
def exports_list():
    db = db_session()
    rows = exports.list_exports(db, limit=100)
    return render_template(
        "exports/list.html",
        title="Exports",
        exports=rows,
        customers=customers.customers_by_id(db, (r.customer_id for r in rows)),
    )


@bp.route("/exports/new", methods=["GET", "POST"])
@allow("operator")
def new_export():
    db = db_session()
    form = ExportForm()
    form.dataset.choices = options([("", "Choose…")] + [(name, name) for name in DATASETS])
    form.customer.choices = active_customer_options(db)
    if request.method == "GET" and request.args.get("customer"):
        form.customer.data = request.args["customer"]
    if form.submitted and form.validate():
        bo = current_backoffice()
        try:
            record = exports.create(
                db,
                bo.references,
                dataset=form.dataset.data,
                customer_id=int(form.customer.data),
                format=form.format.data,
                neutralize_formulas=form.neutralize_formulas.data,
                created_by=current_user.user_id,
                max_attempts=bo.settings.job_max_attempts,
            )
        except Refused as exc:
            db.rollback()
            form.refused(exc)
        else:
            commit_created(db, "export", record)
            customer = customers.get_customer(db, record.customer_id)
            flash(f"Export #{record.id} of {record.dataset} for {customer.code} queued.", "success")
            return redirect(url_for("web.export_page", export_id=record.id))
    return render_template("exports/new.html", title="New export", form=form)


@bp.get("/exports/<int:export_id>")
@allow("viewer")
def export_page(export_id: int):
    db = db_session()
    record = exports.get(db, export_id)
    return render_template(
        "exports/show.html",
        title=f"Export #{record.id}",
        export=record,
        job=queue.get_job(db, record.job_id) if record.job_id else None,
        customer=customers.customers_by_id(db, [record.customer_id]).get(record.customer_id),
        poll_url=url_for("web.export_progress", export_id=record.id),
    )


@bp.get("/exports/<int:export_id>/progress")
@allow("viewer")
def export_progress(export_id: int):
    """The progress fragment htmx polls; once the job has ended, the page reloads whole."""
    db = db_session()
    record = exports.get(db, export_id)
    return job_fragment(queue.get_job(db, record.job_id) if record.job_id else None)


@bp.get("/exports/<int:export_id>/download")
@allow("viewer")
def export_download(export_id: int):
    """The file, exactly as `GET /api/exports/<id>/download` serves it: same checks, same
    audit row; a refusal is a page here."""
    return send_download(export_id)
