"""/api/jobs: follow and cancel bulk work."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.api.body import query_int
from app.auth.access import allow
from app.db.session import db_session
from app.jobs import queue

bp = Blueprint("jobs", __name__, url_prefix="/api/jobs")


@bp.get("")
@allow("viewer")
def list_jobs():
    jobs = queue.list_jobs(
        db_session(),
        status=request.args.get("status") or None,
        kind=request.args.get("kind") or None,
        customer_id=query_int("customer_id", 0) or None,
        limit=query_int("limit", 100, minimum=1, maximum=1000),
    )
    return jsonify(jobs=[j.as_dict() for j in jobs])


@bp.get("/<int:job_id>")
@allow("viewer")
def get_job(job_id: int):
    return jsonify(job=queue.get_job(db_session(), job_id).as_dict())


@bp.post("/<int:job_id>/cancel")
@allow("operator")
def cancel_job(job_id: int):
    db = db_session()
    job = queue.request_cancel(db, queue.get_job(db, job_id))
    db.commit()
    return jsonify(job=job.as_dict()), 202
