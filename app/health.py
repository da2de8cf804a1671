"""Liveness and readiness: is the process up, and can it serve right now.

`/health/ready` is public, for load balancers: anyone gets the status code and
`{"status": ...}`, from a report this process reuses for `READY_REUSE_SECONDS`, so asking
costs no query. Admins and a scraper holding METRICS_TOKEN get the whole report (URLs,
migrations, pools, caches, the listener's state), computed afresh.
"""

from __future__ import annotations

import hmac
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask_login import current_user
from sqlalchemy.pool import Pool, QueuePool

from app.auth.access import PUBLIC, allow
from app.backoffice import current_backoffice
from app.db import migrations
from app.db.engines import Engines, ping
from app.db.schemas import EngineRole
from app.errors import DatabaseUnavailable
from app.jobs import queue

bp = Blueprint("health", __name__, url_prefix="/health")

# How long an anonymous caller's answer may be old: short enough for a load balancer to take
# a host out within a probe or two, long enough that a flood of probes costs nothing.
READY_REUSE_SECONDS = 5.0


class ReadinessCache:
    """This process's last readiness report. One computation per interval: concurrent
    callers wait for the one under way instead of each querying both databases."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._report: dict[str, Any] | None = None
        self._taken_at = 0.0

    def recent(self, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            if self._report is None or time.monotonic() - self._taken_at >= self.seconds:
                self._store(compute())
            assert self._report is not None
            return self._report

    def fresh(self, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """A new report, which anonymous callers are then given too."""
        report = compute()
        with self._lock:
            self._store(report)
        return report

    def _store(self, report: dict[str, Any]) -> None:
        self._report, self._taken_at = report, time.monotonic()


@bp.record_once
def _give_the_app_a_readiness_cache(state) -> None:
    state.app.extensions["readiness"] = ReadinessCache(READY_REUSE_SECONDS)


@bp.get("/live")
@allow(PUBLIC)
def live():
    return jsonify(status="ok", pid=os.getpid())


@bp.get("/ready")
@allow(PUBLIC)
def ready():
    cache: ReadinessCache = current_app.extensions["readiness"]
    if may_see_details():
        report = cache.fresh(full_report)
        body = report
    else:
        report = cache.recent(full_report)
        body = {"status": report["status"]}
    return jsonify(body), 200 if report["status"] == "ready" else 503


def full_report() -> dict[str, Any]:
    bo = current_backoffice()
    report = readiness(bo.engines)
    report["session_cache"] = bo.session_cache.stats()
    report["reference_cache"] = bo.references.cache.stats()
    return report


def may_see_details() -> bool:
    """Those who may read /metrics: a scraper holding METRICS_TOKEN, or an admin (not while a
    password change is pending). A caller the primary cannot identify now gets the status."""
    token = current_backoffice().settings.metrics_token
    offered = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
        return True
    try:
        return bool(
            current_user.is_authenticated
            and current_user.role == "admin"
            and not current_user.must_change_password
        )
    except DatabaseUnavailable:
        return False


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
        return queue.queue_report(conn)


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
