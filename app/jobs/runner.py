"""Running one claimed job: the heartbeat that keeps its lease, cancellation, and fencing.

A handler does its work on a data-engine connection and publishes its results with
`ctx.publish(conn, result)` in the same transaction: the fence there checks this worker still
holds this attempt, so a worker that lost its lease (paused, partitioned, presumed dead) can never
publish over the attempt that replaced it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from app.db.engines import STATEMENT_TIMEOUT
from app.jobs.kinds import Handler, handler_for
from app.jobs.queue import Claim

log = logging.getLogger(__name__)


class JobFailed(Exception):
    """The work cannot succeed as asked (bad input): fail now, do not retry."""

    def __init__(self, message: str, **details: Any) -> None:
        self.message = message
        self.details = details
        line, column = details.get("line"), details.get("column")
        where = f"line {line}" + (f", column {column}" if column else "") if line else ""
        super().__init__(f"{where}: {message}" if where else message)


class JobCancelled(Exception):
    """Someone cancelled the job."""


class LeaseLost(Exception):
    """Another worker holds this job now; this attempt must not write anything."""


@dataclass
class Progress:
    done: int = 0
    total: int | None = None
    unit: str | None = None
    rows: int | None = None  # rows so far, when the unit is not rows (an import counts bytes)


@dataclass
class JobContext:
    claim: Claim
    backoffice: Any  # app.Backoffice
    lease_seconds: float
    on_progress: Callable[[Progress], None] | None = None
    # Absolute paths the person running this process gave for this job (the CLI's synchronous
    # mode): accepted outside the job folders. Never read from the job row (app/jobs/paths.py).
    vouched: frozenset[str] = frozenset()
    progress: Progress = field(default_factory=Progress)
    cancelled: threading.Event = field(default_factory=threading.Event)
    lost: threading.Event = field(default_factory=threading.Event)
    _working: set = field(default_factory=set)  # connections whose statement a cancel stops
    published: str | None = None  # the status `publish` recorded

    @property
    def params(self) -> dict[str, Any]:
        return self.claim.params

    def report(
        self,
        done: int,
        total: int | None = None,
        unit: str | None = None,
        rows: int | None = None,
    ) -> None:
        self.progress = Progress(
            done,
            total if total is not None else self.progress.total,
            unit or self.progress.unit,
            rows,
        )
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def check(self) -> None:
        """Between steps: stop if cancelled or no longer ours."""
        if self.lost.is_set():
            raise LeaseLost()
        if self.cancelled.is_set():
            raise JobCancelled()

    @property
    def data_engine(self) -> Engine:
        """The data engine with the jobs' statement timeout (JOB_STATEMENT_TIMEOUT, none by
        default) on each transaction, never a web request's: a COPY of millions of rows runs
        as long as it must, and stops on a cancel (the heartbeat's) instead."""
        settings = self.backoffice.settings
        return self.backoffice.engines.data.execution_options(
            **{STATEMENT_TIMEOUT: settings.job_statement_timeout}
        )

    @contextlib.contextmanager
    def data_connection(self) -> Iterator[Connection]:
        """A connection for the work (the caller runs its transactions); the heartbeat can
        cancel its statement. A job may hold several, from several threads."""
        with self.data_engine.connect() as conn:
            work = conn.connection.dbapi_connection
            self._working.add(work)
            try:
                yield conn
            except DBAPIError as exc:
                if isinstance(exc.orig, psycopg.errors.QueryCanceled):
                    self.check()  # a cancel we asked for: say why
                raise
            finally:
                self._working.discard(work)

    @contextlib.contextmanager
    def data_transaction(self) -> Iterator[Connection]:
        """The work's connection, in one transaction."""
        with self.data_connection() as conn, conn.begin():
            yield conn

    def interrupt(self) -> None:
        for work in list(self._working):
            with contextlib.suppress(Exception):
                work.cancel_safe()

    def publish(
        self,
        conn: Connection,
        result: dict[str, Any],
        status: str = "succeeded",
        error: str | None = None,
    ) -> None:
        """Fence, then record the outcome, in the caller's transaction. `error`: why a job
        that published its result still failed (a transform over its reject limit)."""
        fence(conn, self.claim)
        self.published = status
        conn.execute(
            text(
                "UPDATE workspace.jobs SET status = :status, result = CAST(:result AS jsonb), "
                "error = :error, finished_at = clock_timestamp(), lease_expires_at = NULL, "
                "progress_done = :done, progress_total = :total, progress_unit = :unit "
                "WHERE id = :id"
            ),
            {
                "status": status,
                "result": json.dumps(result, default=str),
                "error": error,
                "done": self.progress.done,
                "total": self.progress.total,
                "unit": self.progress.unit,
                "id": self.claim.job_id,
            },
        )


def fence(conn: Connection, claim: Claim) -> None:
    """Lock the job row and check this attempt still holds it."""
    held = conn.execute(
        text(
            "SELECT 1 FROM workspace.jobs WHERE id = :id AND attempt = :attempt "
            "AND worker_id = :worker AND status = 'running' FOR UPDATE"
        ),
        {"id": claim.job_id, "attempt": claim.attempt, "worker": claim.worker_id},
    ).first()
    if held is None:
        raise LeaseLost()


class Heartbeat(threading.Thread):
    """Renews the lease and writes progress every few seconds, on its own connection; notices
    a cancel request or a lost lease and interrupts the work's statement."""

    def __init__(self, ctx: JobContext, interval: float) -> None:
        super().__init__(name=f"heartbeat-{ctx.claim.job_id}", daemon=True)
        self.ctx = ctx
        self.interval = interval
        self._stop_event = threading.Event()
        self._last_renewal = time.monotonic()

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        ctx, claim = self.ctx, self.ctx.claim
        try:
            with ctx.backoffice.engines.data.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            ) as conn:
                row = conn.execute(
                    text(
                        "UPDATE workspace.jobs SET heartbeat_at = now(), "
                        "lease_expires_at = now() + make_interval(secs => :lease), "
                        "progress_done = :done, progress_total = :total, progress_unit = :unit "
                        "WHERE id = :id AND attempt = :attempt AND worker_id = :worker "
                        "AND status = 'running' RETURNING cancel_requested"
                    ),
                    {
                        "lease": ctx.lease_seconds,
                        "done": ctx.progress.done,
                        "total": ctx.progress.total,
                        "unit": ctx.progress.unit,
                        "id": claim.job_id,
                        "attempt": claim.attempt,
                        "worker": claim.worker_id,
                    },
                ).first()
        except DBAPIError as exc:
            log.warning("job %s: heartbeat failed: %s", claim.job_id, exc.orig)
            if time.monotonic() - self._last_renewal > ctx.lease_seconds:
                ctx.lost.set()  # the lease has surely run out: stop writing
                ctx.interrupt()
            return
        if row is None:
            ctx.lost.set()
            ctx.interrupt()
        else:
            self._last_renewal = time.monotonic()
            if row.cancel_requested:
                ctx.cancelled.set()
                ctx.interrupt()


@dataclass
class Outcome:
    status: str  # succeeded | failed | cancelled | retrying | lost
    result: dict[str, Any] | None = None
    error: str | None = None


def run_claim(
    backoffice: Any,
    claim: Claim,
    *,
    lease_seconds: float,
    heartbeat_seconds: float,
    on_progress: Callable[[Progress], None] | None = None,
    vouched: frozenset[str] = frozenset(),
) -> Outcome:
    handler = handler_for(claim.kind)
    ctx = JobContext(claim, backoffice, lease_seconds, on_progress, vouched)
    heartbeat = Heartbeat(ctx, heartbeat_seconds)
    heartbeat.start()
    try:
        try:
            result = handler.run(ctx)
            return Outcome(ctx.published or "succeeded", result=result)
        finally:
            heartbeat.stop()
    except LeaseLost:
        log.warning("job %s attempt %s: lease lost, nothing published", claim.job_id, claim.attempt)
        return Outcome("lost")
    except JobCancelled:
        return _end(ctx, handler, "cancelled", None, {})
    except JobFailed as exc:
        return _end(ctx, handler, "failed", str(exc), {"message": exc.message, **exc.details})
    except Exception as exc:  # unexpected: retry while attempts remain
        log.exception("job %s attempt %s failed", claim.job_id, claim.attempt)
        message = _first_line(exc)
        if ctx.cancelled.is_set():
            return _end(ctx, handler, "cancelled", None, {})
        if claim.attempt < claim.max_attempts:
            return _retry(ctx, message)
        return _end(
            ctx, handler, "failed", f"gave up after {claim.attempt} attempts: {message}", {}
        )


def _end(
    ctx: JobContext, handler: Handler, status: str, error: str | None, details: dict
) -> Outcome:
    try:
        with ctx.data_engine.begin() as conn:
            fence(conn, ctx.claim)
            if status == "cancelled":
                handler.on_cancelled(conn, ctx.params)
            else:
                handler.on_failed(conn, ctx.params, {"message": error, **details})
            conn.execute(
                text(
                    "UPDATE workspace.jobs SET status = :status, error = :error, "
                    "finished_at = clock_timestamp(), lease_expires_at = NULL WHERE id = :id"
                ),
                {"status": status, "error": error, "id": ctx.claim.job_id},
            )
    except LeaseLost:
        return Outcome("lost")
    return Outcome(status, error=error)


def _retry(ctx: JobContext, message: str) -> Outcome:
    """Give the job back at once instead of waiting for the lease to run out."""
    with ctx.data_engine.begin() as conn:
        try:
            fence(conn, ctx.claim)
        except LeaseLost:
            return Outcome("lost")
        conn.execute(
            text(
                "UPDATE workspace.jobs SET status = 'queued', worker_id = NULL, "
                "lease_expires_at = NULL, error = :error WHERE id = :id"
            ),
            {"error": f"attempt {ctx.claim.attempt}: {message}", "id": ctx.claim.job_id},
        )
    return Outcome("retrying", error=message)


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text_ = str(orig).strip().splitlines()
    return text_[0] if text_ else type(orig).__name__
