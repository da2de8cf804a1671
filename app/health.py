"""Liveness and readiness (SPEC §8): is the process up, and can it serve right now."""

from __future__ import annotations

import os
from typing import Any

from flask import Blueprint, current_app, jsonify
from sqlalchemy import text
from sqlalchemy.pool import Pool, QueuePool

from app.auth.access import PUBLIC, allow
from app.db import migrations
from app.db.engines import Engines, ping
from app.db.schemas import EngineRole
from app.errors import DatabaseUnavailable

bp = Blueprint("health", __name__, url_prefix="/health")


@bp.get("/live")
@allow(PUBLIC)
def live():
    return jsonify(status="ok", pid=os.getpid())


@bp.get("/ready")
@allow(PUBLIC)
def ready():
    bo = current_app.extensions["backoffice"]
    report = readiness(bo.engines)
    report["session_cache"] = bo.session_cache.stats()
    report["reference_cache"] = bo.references.cache.stats()
    return jsonify(report), 200 if report["status"] == "ready" else 503


def readiness(engines: Engines) -> dict[str, Any]:
    """Per engine: reachable, latency, migrations current, pool use. Also used by `doctor`."""
    report: dict[str, Any] = {"mode": "split" if engines.split else "single", "engines": {}}
    problems = []
    for role, _engine in engines.items():
        entry = engine_report(engines, role)
        report["engines"][role] = entry
        if not entry["reachable"]:
            problems.append(f"{role} engine unreachable")
        elif entry["migrations"]["state"] != "current":
            problems.append(f"{role} migrations {entry['migrations']['state']}")
    data = report["engines"]["data"]
    if data["reachable"] and data["migrations"]["state"] == "current":
        report["jobs"] = job_report(engines)
    report["status"] = "unavailable" if problems else "ready"
    if problems:
        report["problems"] = problems
    return report


def job_report(engines: Engines) -> dict[str, Any]:
    """The queue at a glance: how long the oldest queued job has waited, what runs."""
    with engines.connect("data") as conn:
        row = conn.execute(
            text(
                "SELECT extract(epoch FROM now() - min(created_at) FILTER "
                "(WHERE status = 'queued')), count(*) FILTER (WHERE status = 'queued'), "
                "count(*) FILTER (WHERE status = 'running') FROM workspace.jobs "
                "WHERE status IN ('queued', 'running')"
            )
        ).one()
    return {
        "oldest_queued_seconds": round(float(row[0]), 1) if row[0] is not None else None,
        "queued": row[1],
        "running": row[2],
    }


def engine_report(engines: Engines, role: EngineRole) -> dict[str, Any]:
    engine = engines[role]
    entry: dict[str, Any] = {"url": engines.masked_url(role)}
    try:
        entry["latency_ms"] = round(ping(engines, role), 2)
        with engines.connect(role) as conn:
            entry["migrations"] = migrations.tree_status(conn, role).as_dict()
        entry["reachable"] = True
    except DatabaseUnavailable as exc:
        entry.update(reachable=False, error=exc.reason)
    entry["pool"] = pool_report(engine.pool)
    return entry


def pool_report(pool: Pool) -> dict[str, int]:
    """In use, size and overflow of a QueuePool (SQLAlchemy counts overflow from -size)."""
    if not isinstance(pool, QueuePool):
        return {}
    return {
        "in_use": pool.checkedout(),
        "size": pool.size(),
        "overflow": max(pool.overflow(), 0),
        "max_overflow": pool._max_overflow,
    }
