"""/api/jobs: follow and cancel bulk work."""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, jsonify
from flask_login import current_user

from app.api.boundary import Limit, Offset, Query, takes
from app.audit import Actor
from app.auth.access import allow
from app.auth.login import client_ip
from app.auth.roles import RANK
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.jobs import queue
from app.jobs.kinds import KINDS, STATUSES
from app.models.data.workspace import Job

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


def job_json(job: Job | None) -> dict[str, Any] | None:
    """A job as the caller may see it: its parameters (file paths on a host, mappings) are for
    those who run jobs, operators and admins; viewers see the progress and outcome."""
    if job is None:
        return None
    shown = job.as_dict()
    if RANK[current_user.role] < RANK["operator"]:
        del shown["params"]
    return shown


def audit_bulk_action(db, action: str, target_type: str, target_id: int, **details: Any) -> None:
    """Who did which bulk action on which customer's data, in the audit log (primary engine).
    Called once the data engine's work has committed, in a transaction of its own: none spans
    the two engines (docs/ARCHITECTURE.md); a crash in between loses the row, never the data."""
    Actor.of(current_user, client_ip()).audit(
        db, action, target_type=target_type, target_id=target_id, **details
    )
    db.commit()


def job_of(db, job_id: int | None) -> dict[str, Any] | None:
    """The job behind an import, transform or export, as the caller may see it."""
    return job_json(queue.get_job(db, job_id)) if job_id else None


def named(db, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A page of data-engine rows (as dicts), each with the customer it is for (`customer`:
    id, code, name) and the user who made it (`creator`: id, email, name), both None when
    gone: two batched lookups through the reference cache for the page, never a join across
    the engines."""
    references = current_backoffice().references
    customers = references.lookup_many(db, "customer", (r.get("customer_id") for r in rows))
    users = references.lookup_many(db, "user", (r.get("created_by") for r in rows))
    for row in rows:
        customer, creator = customers.get(row.get("customer_id")), users.get(row.get("created_by"))
        row["customer"] = customer.as_dict() if customer else None
        row["creator"] = creator.as_dict() if creator else None
    return rows


def with_job(db, name: str, record) -> dict[str, Any]:
    """An import, transform or export as the API shows it: `{name: record, "job": its job}`."""
    return {name: record.as_dict(), "job": job_of(db, record.job_id)}


# What the audit row of each created bulk action says of it, besides its customer and job.
CREATED_DETAILS = {
    "import": lambda batch: {"file_name": batch.file_name, "size_bytes": batch.size_bytes},
    "transform": lambda transform: {
        "import_id": transform.import_id,
        "dataset": transform.dataset,
        **({"reverts_id": transform.reverts_id} if transform.reverts_id else {}),
    },
    "export": lambda export: {
        "dataset": export.dataset,
        "format": export.format,
        "neutralize_formulas": export.neutralize_formulas,
    },
}


def commit_created(db, name: str, record, action: str | None = None) -> None:
    """A bulk action just created (`name`: import, transform, export), from the API or a page:
    committed, then audited as `action` (`<name>.create` unless said)."""
    db.commit()
    audit_bulk_action(
        db,
        action or f"{name}.create",
        name,
        record.id,
        customer_id=record.customer_id,
        job_id=record.job_id,
        **CREATED_DETAILS[name](record),
    )


def queued(db, name: str, record, action: str | None = None) -> tuple[Response, int]:
    """The API's answer to a bulk action just created: 202 with the record and its job."""
    commit_created(db, name, record, action)
    return jsonify(with_job(db, name, record)), 202


class JobList(Query):
    status: Literal[STATUSES] | None = None  # type: ignore[valid-type]
    kind: Literal[KINDS] | None = None  # type: ignore[valid-type]
    customer_id: Offset | None = None
    limit: Limit = 100


@bp.get("")
@allow("viewer")
@takes(query=JobList)
def list_jobs(query: JobList):
    db = db_session()
    jobs = queue.list_jobs(
        db,
        status=query.status,
        kind=query.kind,
        customer_id=query.customer_id or None,
        limit=query.limit,
    )
    return jsonify(jobs=named(db, [job_json(j) for j in jobs]))


@bp.get("/<int:job_id>")
@allow("viewer")
def get_job(job_id: int):
    return jsonify(job=job_json(queue.get_job(db_session(), job_id)))


@bp.post("/<int:job_id>/cancel")
@allow("operator")
def cancel_job(job_id: int):
    return jsonify(job=job_json(cancel_recorded(db_session(), job_id))), 202


def cancel_recorded(db, job_id: int) -> Job:
    """Cancel a job and record who did, for this route and the pages alike: stopping someone's
    import or export is a bulk action too."""
    job = queue.request_cancel(db, queue.get_job(db, job_id))
    db.commit()
    audit_bulk_action(db, "job.cancel", "job", job.id, customer_id=job.customer_id, kind=job.kind)
    return job
