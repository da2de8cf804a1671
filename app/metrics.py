"""`/metrics`: Prometheus text (by `prometheus_client`) for admins or a scraper holding
METRICS_TOKEN.

Under gunicorn every worker writes its samples to files in PROMETHEUS_MULTIPROC_DIR (the
library's multiprocess mode, set up by `app/gunicorn_conf.py`), and whichever worker answers a
scrape sums every worker of the host: counters only grow, whichever worker answers. Without
that variable (tests, `flask run`, `backoffice serve`) the library's default registry of this
one process is served.

Counted as it happens, in each worker: requests and their latency per route group (the
blueprint: `users`, `customers`, `web`, `health`, ...), statements, their time and errors per
engine, the 503s for a full pool or a statement past its timeout, refused cross-engine
references, the caches' hits and misses, pool use and the change listener (gauges, see
MULTIPROCESS MODES below). Read at scrape time: jobs by kind and status, from the database.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, event

from app.auth.access import METRICS, allow
from app.backoffice import Backoffice, current_backoffice
from app.jobs import queue

bp = Blueprint("metrics", __name__)

# Statements run from a millisecond to a data engine's 60 s timeout; requests to the same.
SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

HTTP_REQUESTS = Counter(
    "backoffice_http_requests",
    "Requests answered, per route group (the blueprint) and status.",
    ["group", "status"],
)
HTTP_SECONDS = Histogram(
    "backoffice_http_request_duration_seconds",
    "Time to answer a request, per route group (the blueprint).",
    ["group"],
    buckets=SECONDS_BUCKETS,
)
DB_QUERIES = Counter("backoffice_db_queries", "Statements sent, per engine.", ["engine"])
DB_QUERY_SECONDS = Counter(
    "backoffice_db_query_seconds", "Time in statements, per engine.", ["engine"]
)
DB_QUERY_DURATION = Histogram(
    "backoffice_db_query_duration_seconds",
    "Time of each statement, per engine.",
    ["engine"],
    buckets=SECONDS_BUCKETS,
)
DB_ERRORS = Counter("backoffice_db_errors", "Database errors, per engine.", ["engine"])
DB_POOL_TIMEOUTS = Counter(
    "backoffice_db_pool_timeouts",
    "Requests refused (503 busy) after waiting DB_POOL_TIMEOUT for a connection, per engine.",
    ["engine"],
)
DB_STATEMENT_TIMEOUTS = Counter(
    "backoffice_db_statement_timeouts",
    "Requests refused (503) for a statement past its statement timeout, per engine.",
    ["engine"],
)
REFERENCE_REFUSALS = Counter(
    "backoffice_reference_refusals",
    "Writes refused for naming a customer or user that is unknown or inactive (422).",
    ["kind", "reason"],
)
CACHE_LOOKUPS = {
    (cache, hit): Counter(
        f"backoffice_{cache}_cache_{'hits' if hit else 'misses'}",
        f"{cache.title()} cache {'hits' if hit else 'misses'}.",
    )
    for cache in ("session", "reference")
    for hit in (True, False)
}

# MULTIPROCESS MODES of the gauges each worker sets (ignored in a single process):
# the busiest live worker's checked-out connections against the pool size of a worker (the same
# in all): `livemax`, so `in_use == size` means some worker's requests wait for a connection,
# the state that ends in a 503 busy. The listener: `livemin`, 0 while any live worker is deaf
# to change notices (its caches are then off). `live*`: a dead worker's value goes with it.
DB_POOL_IN_USE = Gauge(
    "backoffice_db_pool_in_use",
    "Connections checked out, per engine: the busiest worker's.",
    ["engine"],
    multiprocess_mode="livemax",
)
DB_POOL_SIZE = Gauge(
    "backoffice_db_pool_size",
    "Pool size of a worker, per engine.",
    ["engine"],
    multiprocess_mode="livemax",
)
CHANGE_LISTENER_UP = Gauge(
    "backoffice_change_listener_up",
    "1 while every worker that served a request listens for change notices (caches trusted).",
    multiprocess_mode="livemin",
)

REFUSAL_COUNTERS = {"busy": DB_POOL_TIMEOUTS, "statement_timeout": DB_STATEMENT_TIMEOUTS}


def engine_labels(engines) -> dict[str, Engine]:
    """Labels for the distinct engines: primary and data, or one `database` in single mode."""
    if engines.split:
        return {"primary": engines.primary, "data": engines.data}
    return {"database": engines.primary}


def count_refusal(kind: str, role: str | None) -> None:
    """For app/errors.py: a "busy" or "statement_timeout" 503; `role` None is single mode's
    one database."""
    REFUSAL_COUNTERS[kind].labels(engine=role or "database").inc()


def count_reference_refusal(code: str) -> None:
    """For app/references.py: `unknown_customer`, `inactive_user`, ..."""
    reason, _, kind = code.partition("_")
    REFERENCE_REFUSALS.labels(kind=kind, reason=reason).inc()


def watch_engine(engine: Engine, label: str) -> None:
    """Statements, their time and errors, and the pool's use, from SQLAlchemy's events."""
    # Every series exists from the start at 0, so rate() and alerts see the first increment.
    for counter in (DB_QUERIES, DB_QUERY_SECONDS, DB_ERRORS, *REFUSAL_COUNTERS.values()):
        counter.labels(engine=label)
    DB_QUERY_DURATION.labels(engine=label)
    queries, seconds = DB_QUERIES.labels(engine=label), DB_QUERY_SECONDS.labels(engine=label)
    duration, errors = DB_QUERY_DURATION.labels(engine=label), DB_ERRORS.labels(engine=label)
    in_use, size = DB_POOL_IN_USE.labels(engine=label), DB_POOL_SIZE.labels(engine=label)

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn, cursor, statement, parameters, context, executemany):
        conn.info.setdefault("query_started", []).append(time.perf_counter())

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn, cursor, statement, parameters, context, executemany):
        elapsed = time.perf_counter() - conn.info["query_started"].pop()
        queries.inc()
        seconds.inc(elapsed)
        duration.observe(elapsed)

    @event.listens_for(engine, "handle_error")
    def _error(context):
        # Errors outside a statement (connecting, committing) started no timer.
        started = context.connection.info.get("query_started") if context.connection else None
        if started:
            started.pop()
        errors.inc()

    # Set in the worker that uses the pool (a gauge is per process until a scrape sums it).
    @event.listens_for(engine.pool, "checkout")
    def _checkout(dbapi_connection, record, proxy):
        in_use.set(engine.pool.checkedout())
        size.set(engine.pool.size())

    @event.listens_for(engine.pool, "checkin")
    def _checkin(dbapi_connection, record):
        in_use.set(engine.pool.checkedout())

    size.set(engine.pool.size())


def init_metrics(app: Flask, bo: Backoffice) -> None:
    """Count this app's requests, statements, caches and references (call before the app's
    other `before_request` functions, so that a request they refuse is timed too)."""
    for label, engine in engine_labels(bo.engines).items():
        watch_engine(engine, label)
    for name, cache in (("session", bo.session_cache), ("reference", bo.references.cache)):
        counters = CACHE_LOOKUPS[name, True], CACHE_LOOKUPS[name, False]
        cache.on_lookup = lambda hit, counters=counters: counters[0 if hit else 1].inc()
    bo.references.on_refusal = count_reference_refusal
    app.before_request(_request_started)
    app.after_request(_request_answered)


def _request_started() -> None:
    g.metrics_started = time.perf_counter()


def _request_answered(response: Response) -> Response:
    # A URL no route matches has no blueprint: one group, not one series per URL guessed.
    group = request.blueprint or "unmatched"
    started = g.get("metrics_started")
    if started is not None:
        HTTP_SECONDS.labels(group=group).observe(time.perf_counter() - started)
    HTTP_REQUESTS.labels(group=group, status=str(response.status_code)).inc()
    CHANGE_LISTENER_UP.set(int(current_backoffice().notices.connected))
    return response


class ScrapeTime(Collector):
    """What is read when scraped, by the worker that answers: jobs by kind and status from the
    data engine (the same for every worker, so summing files would be wrong), and its pid."""

    def __init__(self, bo: Backoffice) -> None:
        self.bo = bo

    def collect(self) -> Iterator[GaugeMetricFamily]:
        info = GaugeMetricFamily(
            "backoffice_process_info", "The worker that answered.", labels=["pid"]
        )
        info.add_metric([str(os.getpid())], 1)
        yield info
        try:
            with self.bo.engines.connect("data") as conn:
                counts = queue.counts_by_kind_and_status(conn)
        except Exception:  # the data engine is down: the rest still helps
            yield GaugeMetricFamily(
                "backoffice_jobs_unavailable", "1 when jobs could not be counted.", value=1
            )
            return
        jobs = GaugeMetricFamily(
            "backoffice_jobs", "Jobs by kind and status.", labels=["kind", "status"]
        )
        for kind, status, n in counts:
            jobs.add_metric([kind, status], n)
        yield jobs


def counted_registry() -> CollectorRegistry:
    """Every worker's files summed under gunicorn; this process's default registry otherwise."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


@bp.get("/metrics")
@allow(METRICS)
def metrics():
    scrape_time = CollectorRegistry()
    scrape_time.register(ScrapeTime(current_backoffice()))
    body = generate_latest(counted_registry()) + generate_latest(scrape_time)
    return Response(body, content_type=CONTENT_TYPE_LATEST)
