"""The dashboard: the engines' state, the job queue, my recent jobs."""

from __future__ import annotations

from flask import render_template
from flask_login import current_user

from app.auth.access import allow
from app.backoffice import current_backoffice
from app.db.session import db_session
from app.health import readiness
from app.jobs import queue
from app.web.pages import bp


@bp.get("/")
@allow("viewer")
def dashboard():
    bo = current_backoffice()
    report = readiness(bo.engines)
    jobs = []
    if report["engines"]["data"]["reachable"]:
        jobs = queue.list_jobs(db_session(), created_by=current_user.user_id, limit=10)
    return render_template("dashboard.html", title="Dashboard", report=report, jobs=jobs)
