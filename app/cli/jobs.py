"""`backoffice worker` and `backoffice jobs list | show | cancel`."""

from __future__ import annotations

import json
import logging
import sys

import click

from app.cli.context import LazyChoice, backoffice, in_session
from app.jobs.kinds import STATUSES


def _kinds() -> tuple[str, ...]:
    from app.jobs.queue import KINDS

    return KINDS


@click.command("worker")
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Jobs run at once by this process.",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=LazyChoice(_kinds),
    help="Only these kinds (repeatable).",
)
def worker_command(concurrency: int, kinds: tuple[str, ...]) -> None:
    """Claim and run queued jobs until stopped (SIGTERM: after the running jobs)."""
    from app.jobs.worker import Worker
    from app.retention import hourly_chore

    if not logging.getLogger().handlers:  # a service: say what it does, with times, on stderr
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    click.echo(f"worker: {concurrency} at a time, kinds: {', '.join(kinds) or 'all'}", err=True)
    bo = backoffice(listen=True)  # it runs for days: its caches follow the change notices
    chores = [hourly_chore(bo)] if bo.settings.prune_interval_seconds else []
    Worker(bo, concurrency, list(kinds) or None, chores).run()


@click.group("jobs", help="List, show and cancel jobs.")
def jobs_cli() -> None:
    pass


@jobs_cli.command("list")
@click.option("--status", type=click.Choice(STATUSES))
@click.option("--kind", type=LazyChoice(_kinds))
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def jobs_list(status, kind, limit, as_json) -> None:
    from app.jobs import queue

    jobs = in_session(
        lambda session: [
            j.as_dict() for j in queue.list_jobs(session, status=status, kind=kind, limit=limit)
        ]
    )
    if as_json:
        click.echo(json.dumps(jobs))
        return
    for j in jobs:
        p = j["progress"]
        progress = f"{p['done']}/{p['total'] or '?'} {p['unit'] or ''}".strip()
        click.echo(
            f"{j['id']:>6}  {j['kind']:9} {j['status']:9} attempt {j['attempts']}"
            f"/{j['max_attempts']}  {progress}  {j['error'] or ''}"
        )


@jobs_cli.command("show")
@click.argument("job_id", type=int)
def jobs_show(job_id: int) -> None:
    from app.jobs import queue

    job = in_session(lambda session: queue.get_job(session, job_id).as_dict())
    click.echo(json.dumps(job, indent=2))


@jobs_cli.command("cancel")
@click.argument("job_id", type=int)
def jobs_cancel(job_id: int) -> None:
    """Cancel at once when queued; a running job stops within seconds."""
    from app.jobs import queue

    status = in_session(
        lambda session: queue.request_cancel(session, queue.get_job(session, job_id)).status
    )
    click.echo(
        f"job {job_id}: "
        + ("cancelled" if status == "cancelled" else "cancel requested; it stops within seconds")
    )
