"""Transforms: the form on a staged import's page (with its preview), and a transform's page
(live progress, counts, rejected rows)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import HiddenField, SelectField
from wtforms.validators import NumberRange, Optional

from app.api.jobs import commit_created
from app.api.transforms import send_rejects
from app.auth.access import allow
from app.backoffice import current_backoffice
from app.customers import service as customers
from app.datasets import DATASETS
from app.datasets.base import Dataset
from app.db.session import db_session
from app.errors import Refused
from app.imports import service as imports
from app.jobs import queue
from app.models.data.workspace import ImportBatch
from app.transforms import rejects, revert
from app.transforms import service as transforms
from app.web.forms import PageForm, WholeNumberField, options
from app.web.pages import bp, job_fragment, page_number, refused_back

PAGE_SIZE = 50
MAPPED = "map_"  # the mapping's selects: map_<column>, one per dataset column
# The select's value that clears a column: never a header's name, which is stripped of spaces.
CLEAR = " clear"


class TransformForm(PageForm):
    """A dataset, where each of its columns comes from (a select per column, added for the
    dataset by `transform_form`), and the reject limit."""

    dataset = HiddenField()
    max_rejects = WholeNumberField(
        "Max rejects",
        [Optional(), NumberRange(min=0, message="Max rejects is a whole number of at least 0.")],
    )

    refusal_fields = {"invalid_mapping": "dataset"}

    def mapping(self) -> dict[str, str | None]:
        """The whole mapping as chosen: "(none)" leaves a column as stored, "(clear)" empties
        it (None)."""
        return {
            name.removeprefix(MAPPED): None if field.data == CLEAR else field.data
            for name, field in self._fields.items()
            if name.startswith(MAPPED) and field.data
        }

    def columns(self) -> list[Any]:
        return [field for name, field in self._fields.items() if name.startswith(MAPPED)]


def transform_form(dataset: Dataset, header: list[str]) -> TransformForm:
    """The form for a dataset: each column's select lists "(none)" (keep the stored value),
    "(clear)" and the file's headers, pre-filled by the default rule (names equal ignoring
    case, spaces and underscores)."""
    chosen = transforms.by_name(dataset, header)
    headers = [(h, h) for h in header]
    choices = options([("", "(none)"), (CLEAR, "(clear)"), *headers])
    fixed = options([("", "(none)"), *headers])  # a key or required column cannot be cleared

    class Form(TransformForm):
        pass

    for f in dataset.fields:
        setattr(
            Form,
            MAPPED + f.name,
            SelectField(
                f.name,
                choices=fixed if f.required or f.name in dataset.key else choices,
                default=chosen.get(f.name, ""),
            ),
        )
    return Form(dataset=dataset.name)


def transform_section(
    batch: ImportBatch,
    form: TransformForm | None = None,
    preview: transforms.Preview | None = None,
) -> dict[str, Any]:
    """What the import's page shows about transforms: the form (operators and admins, staged
    imports; its dataset from `?dataset=`, else the one the headers fit best), a preview, and
    the import's transforms."""
    header = batch.header or []
    if form is None and batch.status == "staged" and current_user.role in ("operator", "admin"):
        chosen = DATASETS.get(request.args.get("dataset", "")) or transforms.likely_dataset(header)
        form = transform_form(chosen, header)
    return {
        "transform_form": form,
        "dataset": DATASETS.get(form.dataset.data) if form else None,
        "all_datasets": list(DATASETS.values()),
        "preview": preview,
        "transforms": transforms.of_import(db_session(), batch.id),
    }


@bp.get("/transforms/<int:transform_id>")
@allow("viewer")
def transform_page(transform_id: int):
    db = db_session()
    record = transforms.get(db, transform_id)
    page = page_number()
    errors, total = transforms.errors_of_transform(
        db, record.id, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    batch = imports.get_import(db, record.import_id)
    return render_template(
        "transforms/show.html",
        title=f"Transform #{record.id}",
        transform=record,
        batch=batch,
        keys=rejects.keys_of_lines(db, record, batch, sorted({e.line for e in errors})),
        key_name=" · ".join(DATASETS[record.dataset].key),
        job=queue.get_job(db, record.job_id) if record.job_id else None,
        customer=customers.customers_by_id(db, [record.customer_id]).get(record.customer_id),
        counts=transforms.COUNTS,
        use=record.column_use(),
        revert_counts=revert.REVERT_COUNTS,
        errors=errors,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        poll_url=url_for("web.transform_progress", transform_id=record.id),
    )


@bp.get("/transforms/<int:transform_id>/rejects.csv")
@allow("viewer")
def transform_rejects(transform_id: int):
    """ "Download rejected rows": the same file and audit row as the API's."""
    return send_rejects(transform_id)


@bp.get("/transforms/<int:transform_id>/progress")
@allow("viewer")
def transform_progress(transform_id: int):
    """The progress fragment htmx polls; once the job has ended, the page reloads whole."""
    db = db_session()
    record = transforms.get(db, transform_id)
    return job_fragment(queue.get_job(db, record.job_id) if record.job_id else None)


@bp.get("/transforms/<int:transform_id>/revert")
@allow("operator")
def confirm_revert(transform_id: int):
    """Say what a revert would do (how many rows go back) before doing it; or why it cannot."""
    db = db_session()
    record = transforms.get(db, transform_id)
    days = current_backoffice().settings.transform_history_days
    try:
        revert.refuse_unless_revertible(db, record, days)
    except Refused as exc:
        return refused_back(exc, url_for("web.transform_page", transform_id=record.id))
    return render_template(
        "transforms/revert.html",
        title=f"Revert transform #{record.id}",
        transform=record,
        rows=revert.revertible_rows(record),
    )


@bp.post("/transforms/<int:transform_id>/revert")
@allow("operator")
def revert_transform(transform_id: int):
    db = db_session()
    bo = current_backoffice()
    try:
        made = revert.create(
            db,
            bo.references,
            transform_id=transform_id,
            history_days=bo.settings.transform_history_days,
            created_by=current_user.user_id,
            max_attempts=bo.settings.job_max_attempts,
        )
    except Refused as exc:
        db.rollback()
        return refused_back(exc, url_for("web.transform_page", transform_id=transform_id))
    commit_created(db, "transform", made, "transform.revert")
    flash(f"Transform #{made.id} started: the revert of transform #{transform_id}.", "success")
    return redirect(url_for("web.transform_page", transform_id=made.id))
