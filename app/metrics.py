"""`/metrics`: Prometheus text format, for admins or a scraper holding METRICS_TOKEN.

Counters are this process's (a gunicorn worker's): Prometheus scraping several workers sums
them; `backoffice_process_info` carries the pid. Per engine: statements sent, their time,
errors, pool use. Then the caches' hits and misses, and jobs by kind and status.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

from flask import Blueprint, Response
from sqlalchemy import Engine, event

from app.auth.access import METRICS, allow
from app.backoffice import current_backoffice
from app.jobs import queue

bp = Blueprint("metrics", __name__)


class EngineStats:
    """Statements, seconds and errors per engine, counted by SQLAlchemy events."""

    def __init__(self) -> None:
        self.queries: dict[str, int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)
        self.errors: dict[str, int] = defaultdict(int)
        # Requests answered 503 for a full pool ("busy") or a statement past its timeout.
        self.refusals: dict[tuple[str, str], int] = defaultdict(int)
        self._lock = threading.Lock()

    def count_refusal(self, kind: str, role: str | None) -> None:
        """For app/errors.py: `role` None is the one database of single mode."""
        with self._lock:
            self.refusals[kind, role or "database"] += 1

    def watch(self, engine: Engine, label: str) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _start(conn, cursor, statement, parameters, context, executemany):
            conn.info.setdefault("query_started", []).append(time.perf_counter())

        @event.listens_for(engine, "after_cursor_execute")
        def _end(conn, cursor, statement, parameters, context, executemany):
            started = conn.info["query_started"].pop()
            with self._lock:
                self.queries[label] += 1
                self.seconds[label] += time.perf_counter() - started

        @event.listens_for(engine, "handle_error")
        def _error(context):
            # Errors outside a statement (connecting, committing) started no timer.
            started = context.connection.info.get("query_started") if context.connection else None
            if started:
                started.pop()
            with self._lock:
                self.errors[label] += 1


def engine_labels(engines) -> dict[str, Engine]:
    """Labels for the distinct engines: primary and data, or one `database` in single mode."""
    if engines.split:
        return {"primary": engines.primary, "data": engines.data}
    return {"database": engines.primary}


@bp.get("/metrics")
@allow(METRICS)
def metrics():
    bo = current_backoffice()
    lines: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP {name} {help_}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    stats = bo.engine_stats
    labels = engine_labels(bo.engines)
    metric("backoffice_process_info", "gauge", "This process.", [(f'{{pid="{os.getpid()}"}}', 1)])
    metric(
        "backoffice_db_queries_total",
        "counter",
        "Statements sent, per engine.",
        [(f'{{engine="{e}"}}', stats.queries[e]) for e in labels],
    )
    metric(
        "backoffice_db_query_seconds_total",
        "counter",
        "Time in statements, per engine.",
        [(f'{{engine="{e}"}}', round(stats.seconds[e], 6)) for e in labels],
    )
    metric(
        "backoffice_db_errors_total",
        "counter",
        "Database errors, per engine.",
        [(f'{{engine="{e}"}}', stats.errors[e]) for e in labels],
    )
    metric(
        "backoffice_db_pool_timeouts_total",
        "counter",
        "Requests refused (503 busy) after waiting DB_POOL_TIMEOUT for a connection, per engine.",
        [(f'{{engine="{e}"}}', stats.refusals["busy", e]) for e in labels],
    )
    metric(
        "backoffice_db_statement_timeouts_total",
        "counter",
        "Requests refused (503) for a statement past its statement timeout, per engine.",
        [(f'{{engine="{e}"}}', stats.refusals["statement_timeout", e]) for e in labels],
    )
    metric(
        "backoffice_db_pool_in_use",
        "gauge",
        "Connections checked out, per engine.",
        [(f'{{engine="{e}"}}', engine.pool.checkedout()) for e, engine in labels.items()],
    )
    metric(
        "backoffice_db_pool_size",
        "gauge",
        "Pool size, per engine.",
        [(f'{{engine="{e}"}}', engine.pool.size()) for e, engine in labels.items()],
    )
    for cache_name, cache in (("session", bo.session_cache), ("reference", bo.references.cache)):
        metric(
            f"backoffice_{cache_name}_cache_hits_total",
            "counter",
            f"{cache_name.title()} cache hits.",
            [("", cache.hits)],
        )
        metric(
            f"backoffice_{cache_name}_cache_misses_total",
            "counter",
            f"{cache_name.title()} cache misses.",
            [("", cache.misses)],
        )
    metric(
        "backoffice_change_listener_up",
        "gauge",
        "1 while this process listens for change notices (caches trusted).",
        [("", int(bo.notices.connected))],
    )
    try:
        with bo.engines.connect("data") as conn:
            jobs = queue.counts_by_kind_and_status(conn)
        metric(
            "backoffice_jobs",
            "gauge",
            "Jobs by kind and status.",
            [(f'{{kind="{k}",status="{s}"}}', n) for k, s, n in jobs],
        )
    except Exception:  # the data engine is down: the rest still helps
        metric(
            "backoffice_jobs_unavailable", "gauge", "1 when jobs could not be counted.", [("", 1)]
        )
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
