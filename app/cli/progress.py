"""The job of a bulk command (import, transform, export): audited, run here with a progress bar
on stderr or left queued, then what came of it: one JSON object with `--json`, else lines a
person reads."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from app.cli.context import backoffice, cli_actor, in_session

if TYPE_CHECKING:
    from app.db.session import BackofficeSession
    from app.jobs.runner import Progress

# The lines a person reads, from the command's JSON object.
Summarize = Callable[[dict[str, Any]], list[str]]


class ProgressBar:
    """One line on stderr, redrawn: done / total, rows, rate, ETA. Silent when not a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self.enabled = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        if not self.enabled or now - self._last < 0.2:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        done, total = progress.done, progress.total
        rate = done / elapsed
        parts = [f"{self.label}: {_amount(done, progress.unit)}"]
        if total:
            parts[0] += f" / {_amount(total, progress.unit)} ({100 * done / total:3.0f}%)"
        if progress.rows is not None:
            parts.append(f"{progress.rows:,} rows ({progress.rows / elapsed:,.0f}/s)")
        parts.append(f"{_amount(rate, progress.unit)}/s")
        if total and rate > 0:
            parts.append(f"ETA {max(total - done, 0) / rate:4.0f}s")
        click.echo("\r" + "  ".join(parts) + "   ", err=True, nl=False)

    def close(self) -> None:
        if self.enabled:
            click.echo("", err=True)


def _amount(value: float, unit: str | None) -> str:
    if unit == "bytes":
        return f"{value / 1e6:.1f} MB"
    return f"{value:,.0f} {unit or ''}".strip()


def start(
    kind: str,
    record: Any,
    get: Callable[[BackofficeSession, int], Any],
    *,
    run_async: bool,
    as_json: bool,
    label: str,
    summarize: Summarize,
    files: tuple[str, ...] = (),
    action: str | None = None,
    **details: Any,
) -> None:
    """Audit the new import, transform or export, then run its job here (unless `run_async`)
    or leave it queued, and say what came of it: `{kind: record, "job": job}` with --json; exit
    1 when the job failed or was cancelled. Audited as `action` (`<kind>.create` unless said).

    The audit row says who (the operating-system user, for a shell) started what for which
    customer, on the primary engine: in a transaction of its own, once the data engine's work
    has committed (no transaction spans the two engines)."""
    in_session(
        lambda session: cli_actor().audit(
            session,
            action or f"{kind}.create",
            target_type=kind,
            target_id=record.id,
            customer_id=record.customer_id,
            job_id=record.job_id,
            **details,
        )
    )

    if not run_async:
        # `files`: the paths typed on this command line, which the job may use wherever they
        # are because it runs here; a worker would accept them only inside the job folders.
        from app.jobs.worker import run_now

        bar = ProgressBar(label)
        try:
            run_now(backoffice(), record.job_id, on_progress=bar, files=files)
        finally:
            bar.close()

    def describe(session: BackofficeSession) -> dict[str, Any]:
        from app.jobs import queue

        job = queue.get_job(session, record.job_id)
        return {kind: get(session, record.id).as_dict(), "job": job.as_dict()}

    _finish(in_session(describe), as_json, summarize)


def _finish(payload: dict[str, Any], as_json: bool, summarize: Summarize) -> None:
    """Print the outcome, exit 1 when the job failed or was cancelled."""
    if as_json:
        click.echo(json.dumps(payload, default=str))
    else:
        for line in summarize(payload):
            click.echo(line)
    if payload["job"]["status"] in ("failed", "cancelled"):
        sys.exit(1)


def outcome(kind: str, record: dict[str, Any], job: dict[str, Any]) -> str | None:
    """The line for a job that did not succeed: queued or running for the workers (and how to
    follow it), failed or cancelled (and why); None once it succeeded."""
    status = job["status"]
    if status == "succeeded":
        return None
    if status in ("queued", "running"):
        return (
            f"{kind} {record['id']} {status} as job {job['id']}; "
            f"follow it with: backoffice jobs show {job['id']}"
        )
    return f"{kind} {record['id']} {status}" + (f": {job['error']}" if job["error"] else "")
