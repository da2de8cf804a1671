"""Enqueue, claim, sweep and cancel. Claims and sweeps are single autocommit statements: no
transaction stays open between claiming a job and working on it, and none needs a session
feature PgBouncer's transaction mode lacks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, select, text

from app.db.session import BackofficeSession
from app.errors import Refused
from app.jobs.kinds import ENDED, KINDS, handler_for
from app.models.data.workspace import Job


@dataclass(frozen=True)
class Claim:
    """A job this worker holds for one attempt; every write about it names the attempt."""

    job_id: int
    kind: str
    params: dict[str, Any]
    attempt: int
    max_attempts: int
    worker_id: str
    customer_id: int | None
    created_by: int | None


def enqueue(
    session: BackofficeSession,
    kind: str,
    params: dict[str, Any],
    *,
    customer_id: int | None = None,
    created_by: int | None = None,
    max_attempts: int = 3,
) -> Job:
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    job = Job(
        kind=kind,
        params=params,
        customer_id=customer_id,
        created_by=created_by,
        max_attempts=max_attempts,
    )
    session.add(job)
    session.flush()
    return job


class JobRecord(Protocol):
    """An import, transform or export: the record whose work a job does."""

    customer_id: int
    created_by: int | None
    job_id: int | None


def enqueue_for(
    session: BackofficeSession,
    record: JobRecord,
    kind: str,
    params: dict[str, Any],
    *,
    max_attempts: int = 3,
) -> Job:
    """Queue the job that does a record's work, for the record's customer and author, and link
    the record to it."""
    job = enqueue(
        session,
        kind,
        params,
        customer_id=record.customer_id,
        created_by=record.created_by,
        max_attempts=max_attempts,
    )
    record.job_id = job.id
    session.flush()
    return job


CLAIM = text(
    """
    UPDATE workspace.jobs j
    SET status = 'running', attempt = j.attempt + 1, worker_id = :worker,
        lease_expires_at = now() + make_interval(secs => :lease), heartbeat_at = now(),
        started_at = coalesce(j.started_at, now()), error = NULL
    WHERE j.id = (
        SELECT id FROM workspace.jobs
        WHERE (status = 'queued' OR (status = 'running' AND lease_expires_at < now()))
          AND attempt < max_attempts AND NOT cancel_requested
          AND (CAST(:job_id AS bigint) IS NULL OR id = :job_id)
          AND (CAST(:kinds AS text[]) IS NULL OR kind = ANY(:kinds))
        ORDER BY id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    RETURNING j.id, j.kind, j.params, j.attempt, j.max_attempts, j.customer_id, j.created_by
    """
)


def claim(
    engine: Engine,
    worker_id: str,
    lease_seconds: float,
    *,
    job_id: int | None = None,
    kinds: list[str] | None = None,
) -> Claim | None:
    """Take the oldest claimable job (or the one named): queued, or running on a lost lease."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = conn.execute(
            CLAIM,
            {"worker": worker_id, "lease": lease_seconds, "job_id": job_id, "kinds": kinds},
        ).one_or_none()
    if row is None:
        return None
    return Claim(
        row.id,
        row.kind,
        row.params,
        row.attempt,
        row.max_attempts,
        worker_id,
        row.customer_id,
        row.created_by,
    )


SWEEP = text(
    """
    UPDATE workspace.jobs
    SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
        error = CASE WHEN cancel_requested THEN error
                     ELSE format('its worker was lost %s times; gave up', attempt) END,
        finished_at = clock_timestamp(), lease_expires_at = NULL
    WHERE status = 'running' AND lease_expires_at < now()
      AND (attempt >= max_attempts OR cancel_requested)
    RETURNING id, kind, status
    """
)


def sweep(engine: Engine) -> list[tuple[int, str, str]]:
    """End jobs whose worker vanished for the last time (or that were cancelled meanwhile)."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return [tuple(r) for r in conn.execute(SWEEP)]


def get_job(session: BackofficeSession, job_id: int) -> Job:
    return session.get_or_404(Job, job_id, "job")


def list_jobs(
    session: BackofficeSession,
    *,
    status: str | None = None,
    kind: str | None = None,
    customer_id: int | None = None,
    created_by: int | None = None,
    limit: int = 100,
) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if created_by:
        query = query.where(Job.created_by == created_by)
    if status:
        query = query.where(Job.status == status)
    if kind:
        query = query.where(Job.kind == kind)
    if customer_id:
        query = query.where(Job.customer_id == customer_id)
    return list(session.scalars(query))


def request_cancel(session: BackofficeSession, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is stopped by its heartbeat within
    seconds, the statement in flight included."""
    if job.status in ENDED:
        raise Refused(
            f"job {job.id} has already ended ({job.status})", code="job_ended", status=409
        )
    row = (
        session.connection_for("data")
        .execute(
            text(
                "UPDATE workspace.jobs SET cancel_requested = true, "
                "status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, "
                "finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END "
                "WHERE id = :id RETURNING status"
            ),
            {"id": job.id},
        )
        .one()
    )
    session.expire(job)
    if row.status == "cancelled":
        handler_for(job.kind).on_cancelled(session.connection_for("data"), job.params)
    return job


QUEUE_REPORT = text(
    """
    SELECT extract(epoch FROM now() - min(created_at) FILTER (WHERE status = 'queued')),
           count(*) FILTER (WHERE status = 'queued'), count(*) FILTER (WHERE status = 'running')
    FROM workspace.jobs WHERE status IN ('queued', 'running')
    """
)


def queue_report(conn: Connection) -> dict[str, Any]:
    """The queue at a glance: how long the oldest queued job has waited, what runs."""
    oldest, queued, running = conn.execute(QUEUE_REPORT).one()
    return {
        "oldest_queued_seconds": round(float(oldest), 1) if oldest is not None else None,
        "queued": queued,
        "running": running,
    }


def counts_by_kind_and_status(conn: Connection) -> list[tuple[str, str, int]]:
    """How many jobs of each kind are in each status (the pairs that have any)."""
    rows = conn.execute(
        text(
            "SELECT kind, status, count(*) FROM workspace.jobs GROUP BY kind, status ORDER BY 1, 2"
        )
    )
    return [(kind, status, count) for kind, status, count in rows]
