"""Jobs: the list with its filters, one job's page (live while it runs), and cancelling."""

from __future__ import annotations

import json

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.routing import BuildError

from app.api.jobs import cancel_recorded, job_json
from app.auth.access import allow
from app.customers import service as customers
from app.db.session import db_session
from app.errors import Refused
from app.jobs import queue
from app.jobs.kinds import STATUSES
from app.models.data.workspace import Job
from app.web.forms import sentence
from app.web.pages import ENDED, bp, job_fragment, safe_next

# Where each kind's record has its page, and the parameter that names it.
RECORD_PAGES = {
    "import": ("web.import_page", "import_id", "Import"),
    "transform": ("web.transform_page", "transform_id", "Transform"),
    "export": ("web.export_page", "export_id", "Export"),
}


@bp.get("/jobs")
@allow("viewer")
def jobs_list():
    status = request.args.get("status") or ""
    kind = request.args.get("kind") or ""
    status = status if status in STATUSES else ""
    kind = kind if kind in queue.KINDS else ""
    db = db_session()
    rows = queue.list_jobs(db, status=status or None, kind=kind or None, limit=100)
    return render_template(
        "jobs/list.html",
        title="Jobs",
        jobs=rows,
        customers=customers.customers_by_id(db, (j.customer_id for j in rows)),
        status=status,
        kind=kind,
        statuses=STATUSES,
        kinds=queue.KINDS,
    )


@bp.get("/jobs/<int:job_id>")
@allow("viewer")
def job(job_id: int):
    db = db_session()
    record = queue.get_job(db, job_id)
    shown = job_json(record) or {}
    return render_template(
        "jobs/show.html",
        title=f"Job #{record.id}",
        job=record,
        # As the API shows it: the parameters only to those who run jobs.
        params=_as_text(shown["params"]) if "params" in shown else None,
        result=_as_text(record.result) if record.result else None,
        record=record_page(record),
        customer=customers.customers_by_id(db, [record.customer_id]).get(record.customer_id),
        poll_url=url_for("web.job_progress", job_id=record.id),
    )


@bp.get("/jobs/<int:job_id>/progress")
@allow("viewer")
def job_progress(job_id: int):
    """The progress fragment htmx polls; once the job has ended, the page reloads whole."""
    return job_fragment(queue.get_job(db_session(), job_id))


@bp.post("/jobs/<int:job_id>/cancel")
@allow("operator")
def job_cancel(job_id: int):
    """The same cancel as `POST /api/jobs/<id>/cancel`, recorded the same way; then back to the
    page the button was on."""
    back = safe_next(request.form.get("next") or url_for("web.job", job_id=job_id))
    db = db_session()
    try:
        cancelled = cancel_recorded(db, job_id)
    except Refused as exc:
        db.rollback()
        if exc.status == 404:
            raise
        flash(sentence(exc.message), "error")
    else:
        if cancelled.status in ENDED:
            flash(f"Job #{job_id} cancelled.", "success")
        else:
            flash(f"Job #{job_id} is asked to stop; it stops within seconds.", "success")
    return redirect(back)


def record_page(job: Job) -> tuple[str, str] | None:
    """The link to what the job works on (an import, a transform, an export): its label and
    address, when that kind has a page."""
    endpoint, param, label = RECORD_PAGES.get(job.kind, ("", "", ""))
    record_id = (job.params or {}).get(param)
    if endpoint not in current_app.view_functions or not isinstance(record_id, int):
        return None
    try:
        return f"{label} #{record_id}", url_for(endpoint, **{param: record_id})
    except BuildError:  # a page that names its record otherwise: no link rather than an error
        return None


def _as_text(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)
