"""`backoffice import | worker | jobs ... | imports purge`: bulk work from a shell.

Commands that create something run the job in this process with a progress bar on stderr,
unless `--async` queues it for the workers. With `--json` they print exactly one JSON object on
stdout. They exit non-zero when the job failed or was cancelled.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime, timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

from app.auth.cli import cli_actor
from app.customers.services import find_by_code
from app.db.session import session_scope
from app.errors import APIError
from app.imports import service as imports
from app.jobs import queue
from app.jobs.runner import Progress
from app.jobs.worker import Worker, run_now


def _bo():
    return current_app.extensions["backoffice"]


def _scope():
    return session_scope(_bo().session_factory)


def _customer(session, code: str):
    customer = find_by_code(session, code)
    if customer is None:
        raise click.ClickException(f"no customer with code {code}")
    return customer


def _audit(action: str, target_type: str, target_id: int, **details) -> None:
    """Who started which bulk action for which customer (the operating-system user, for a
    shell), in the audit log on the primary engine: in a transaction of its own, once the data
    engine's work has committed (no transaction spans the two engines)."""
    with _scope() as session:
        cli_actor().audit(session, action, target_type=target_type, target_id=target_id, **details)


def _refuse(exc: APIError):
    raise click.ClickException(exc.message) from None


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


def _finish(job_id: int, as_json: bool, describe) -> None:
    """Print the outcome (one JSON object with --json), exit 1 unless it succeeded."""
    with _scope() as session:
        job = queue.get_job(session, job_id)
        payload = describe(session, job)
        status = job.status
    if as_json:
        click.echo(json.dumps(payload, default=str))
    else:
        line = f"job {job_id} {status}"
        if payload.get("job", {}).get("error"):
            line += f": {payload['job']['error']}"
        click.echo(line)
    if status in ("failed", "cancelled"):
        sys.exit(1)


def _run_or_queue(
    job_id: int, run_async: bool, as_json: bool, label: str, describe, files: tuple = ()
) -> None:
    """`files`: the paths typed on this command line, which the job may use wherever they are
    because it runs here; a worker would accept them only inside the job folders."""
    if not run_async:
        bar = ProgressBar(label)
        try:
            run_now(_bo(), job_id, on_progress=bar, files=files)
        finally:
            bar.close()
    _finish(job_id, as_json, describe)


def _describe_import(import_id: int):
    def describe(session, job):
        return {"import": imports.get_import(session, import_id).as_dict(), "job": job.as_dict()}

    return describe


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--customer", "customer_code", required=True, help="The customer's code.")
@click.option("--encoding", help="The file's encoding (default UTF-8).")
@click.option("--delimiter", help="One of , ; tab | (default: detected from the header).")
@click.option("--async", "run_async", is_flag=True, help="Queue it for the workers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@with_appcontext
def import_command(file, customer_code, encoding, delimiter, run_async, as_json) -> None:
    """Stage a CSV FILE for a customer into the workspace."""
    bo = _bo()
    try:
        with _scope() as session:
            customer = _customer(session, customer_code)
            if run_async:  # a worker on another host must be able to read the bytes
                with open(file, "rb") as handle:
                    batch = imports.receive(
                        session,
                        bo.references,
                        customer_id=customer.id,
                        created_by=None,
                        file_name=file,
                        stream=handle,
                        size_limit=bo.settings.max_upload_bytes,
                        encoding=encoding,
                        delimiter=delimiter,
                        max_attempts=bo.settings.job_max_attempts,
                    )
            else:
                batch = imports.receive(
                    session,
                    bo.references,
                    customer_id=customer.id,
                    created_by=None,
                    file_name=file,
                    stream=None,
                    local_path=os.path.realpath(file),
                    size_limit=0,
                    encoding=encoding,
                    delimiter=delimiter,
                    max_attempts=bo.settings.job_max_attempts,
                )
            import_id, job_id = batch.id, batch.job_id
    except APIError as exc:
        _refuse(exc)
    _audit(
        "import.create",
        "import",
        import_id,
        customer_id=customer.id,
        job_id=job_id,
        file_name=batch.file_name,
        size_bytes=batch.size_bytes,
    )
    files = () if run_async else (os.path.realpath(file),)
    _run_or_queue(job_id, run_async, as_json, "staging", _describe_import(import_id), files)


def _describe_transform(transform_id: int):
    def describe(session, job):
        from app.transforms import service as transforms

        return {"transform": transforms.get(session, transform_id).as_dict(), "job": job.as_dict()}

    return describe


@click.command("transform")
@click.argument("import_id", type=int)
@click.option("--dataset", required=True, help="products, rates, ...")
@click.option(
    "--map",
    "mappings",
    multiple=True,
    metavar="COLUMN=HEADER",
    help="Take a dataset column from a header of another name (repeatable).",
)
@click.option(
    "--max-rejects",
    type=click.IntRange(min=0),
    help="Fail, publishing nothing, above this many rejected rows.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Cast and check the first rows, print what would happen, write nothing.",
)
@click.option("--async", "run_async", is_flag=True, help="Queue it for the workers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@with_appcontext
def transform_command(
    import_id, dataset, mappings, max_rejects, dry_run, run_async, as_json
) -> None:
    """Cast a staged import into a dataset's reference table for its customer."""
    from app.transforms import service as transforms

    mapping = {}
    for item in mappings:
        column, sep, header = item.partition("=")
        if not sep or not column:
            raise click.BadParameter(f"{item!r}: use COLUMN=HEADER", param_hint="--map")
        mapping[column.strip()] = header
    bo = _bo()
    if dry_run:
        if run_async:
            raise click.BadParameter("a dry run runs here at once", param_hint="--async")
        try:
            with _scope() as session:
                found = transforms.preview(
                    session,
                    bo.references,
                    import_id=import_id,
                    dataset=dataset,
                    mapping=mapping or None,
                    max_rejects=max_rejects,
                )
                session.rollback()
        except APIError as exc:
            _refuse(exc)
        _print_preview(found, as_json)
        return
    try:
        with _scope() as session:
            t = transforms.create(
                session,
                bo.references,
                import_id=import_id,
                dataset=dataset,
                mapping=mapping or None,
                max_rejects=max_rejects,
                created_by=None,
                max_attempts=bo.settings.job_max_attempts,
            )
            transform_id, job_id = t.id, t.job_id
    except APIError as exc:
        _refuse(exc)
    _audit(
        "transform.create",
        "transform",
        transform_id,
        customer_id=t.customer_id,
        job_id=job_id,
        import_id=import_id,
        dataset=dataset,
    )
    _run_or_queue(job_id, run_async, as_json, "transforming", _describe_transform(transform_id))


def _print_preview(found, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"preview": found.as_dict()}, default=str))
        return
    which = (
        f"all {found.rows:,} rows"
        if found.complete
        else f"the first {found.rows:,} of {found.rows_staged:,} rows"
    )
    click.echo(
        f"preview: {which} of import {found.import_id} as {found.dataset}; nothing was written"
    )
    click.echo(", ".join(f"{name} {found.counts[name]:,}" for name in found.counts))
    if found.over_max_rejects:
        click.echo(f"more than --max-rejects {found.max_rejects}: the transform would fail")
    for r in found.rejects:
        click.echo(f"line {r['line']}, {r['column']}: {r['value']!r}: {r['reason']}")
    if found.counts["rejected"] > len({r["line"] for r in found.rejects}):
        click.echo("... the first rejected rows only")


@click.command("export")
@click.argument("dataset")
@click.option("--customer", "customer_code", required=True, help="The customer's code.")
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write (with --async: inside EXPORT_DIR on the worker's host).",
)
@click.option("--gzip", "gzipped", is_flag=True, help="Write gzipped CSV.")
@click.option(
    "--neutralize-formulas",
    is_flag=True,
    help="Prefix text cells starting with = + - @ tab or CR with ' (for spreadsheets).",
)
@click.option("--async", "run_async", is_flag=True, help="Queue it for the workers.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@with_appcontext
def export_command(
    dataset, customer_code, output, gzipped, neutralize_formulas, run_async, as_json
) -> None:
    """Write a dataset's rows for a customer as CSV, in key order, with a header row."""
    from app.exports import service as exports

    bo = _bo()
    output = os.path.abspath(output)
    folder = exports.export_dir(bo.settings, bo.instance_path)
    if run_async and not _inside(output, folder):
        raise click.BadParameter(
            f"with --async a worker writes the file, and workers write only inside EXPORT_DIR "
            f"({folder}); give a path there, or leave out --async",
            param_hint="--output",
        )
    try:
        with _scope() as session:
            customer = _customer(session, customer_code)
            e = exports.create(
                session,
                bo.references,
                dataset=dataset,
                customer_id=customer.id,
                format="csv.gz" if gzipped else "csv",
                created_by=None,
                output=output,
                neutralize_formulas=neutralize_formulas,
                max_attempts=bo.settings.job_max_attempts,
            )
            export_id, job_id = e.id, e.job_id
    except APIError as exc:
        _refuse(exc)
    _audit(
        "export.create",
        "export",
        export_id,
        customer_id=customer.id,
        job_id=job_id,
        dataset=dataset,
        format=e.format,
        neutralize_formulas=neutralize_formulas,
        output=output,
    )

    def describe(session, job):
        return {"export": exports.get(session, export_id).as_dict(), "job": job.as_dict()}

    _run_or_queue(job_id, run_async, as_json, "exporting", describe, (output,))


def _inside(path: str, folder) -> bool:
    parent, root = os.path.realpath(os.path.dirname(path)), os.path.realpath(folder)
    return parent == root or parent.startswith(root + os.sep)


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
    type=click.Choice(queue.KINDS),
    help="Only these kinds (repeatable).",
)
@with_appcontext
def worker_command(concurrency: int, kinds: tuple[str, ...]) -> None:
    """Claim and run queued jobs until stopped (SIGTERM: after the running jobs)."""
    if not logging.getLogger().handlers:  # a service: say what it does, with times, on stderr
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
    click.echo(f"worker: {concurrency} at a time, kinds: {', '.join(kinds) or 'all'}", err=True)
    Worker(_bo(), concurrency, list(kinds) or None).run()


@click.group("jobs", help="List, show and cancel jobs.")
def jobs_cli() -> None:
    pass


@jobs_cli.command("list")
@click.option(
    "--status", type=click.Choice(["queued", "running", "succeeded", "failed", "cancelled"])
)
@click.option("--kind", type=click.Choice(queue.KINDS))
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def jobs_list(status, kind, limit, as_json) -> None:
    with _scope() as session:
        jobs = [
            j.as_dict() for j in queue.list_jobs(session, status=status, kind=kind, limit=limit)
        ]
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
@with_appcontext
def jobs_show(job_id: int) -> None:
    try:
        with _scope() as session:
            click.echo(json.dumps(queue.get_job(session, job_id).as_dict(), indent=2))
    except APIError as exc:
        _refuse(exc)


@jobs_cli.command("cancel")
@click.argument("job_id", type=int)
@with_appcontext
def jobs_cancel(job_id: int) -> None:
    """Cancel at once when queued; a running job stops within seconds."""
    try:
        with _scope() as session:
            job = queue.request_cancel(session, queue.get_job(session, job_id))
            status = job.status
    except APIError as exc:
        _refuse(exc)
    click.echo(
        f"job {job_id}: "
        + ("cancelled" if status == "cancelled" else "cancel requested; it stops within seconds")
    )


@click.group("imports", help="Manage staged imports.")
def imports_cli() -> None:
    pass


@imports_cli.command("errors")
@click.argument("import_id", type=int)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def imports_errors(import_id: int, limit: int, as_json: bool) -> None:
    """What is wrong in an import: why it failed, and the rows its transforms rejected."""
    from app.transforms import service as transforms

    try:
        with _scope() as session:
            batch = imports.get_import(session, import_id)
            rows, total = transforms.errors_of_import(session, import_id, offset=0, limit=limit)
            errors = ([batch.error] if batch.error else []) + [r.as_dict() for r in rows]
    except APIError as exc:
        _refuse(exc)
    if as_json:
        click.echo(json.dumps({"errors": errors, "total": total + bool(batch.error)}))
        return
    for e in errors:
        where = f"line {e['line']}" if e.get("line") else "file"
        column = f", {e['column']}" if e.get("column") else ""
        value = f" ({e['value']!r})" if e.get("value") is not None else ""
        click.echo(f"{where}{column}: {e['message']}{value}")
    if total > len(rows):
        click.echo(f"... {total - len(rows)} more (--limit)")


@imports_cli.command("purge")
@click.option("--older-than", "age", required=True, help="An age: 30d, 12h, 90m.")
@click.option("--dry-run", is_flag=True)
@with_appcontext
def imports_purge(age: str, dry_run: bool) -> None:
    """Drop staged rows and stored files of imports older than AGE (their records stay)."""
    match = re.fullmatch(r"(\d+)([dhm])", age.strip())
    if not match:
        raise click.BadParameter("use a number and d, h or m: 30d, 12h, 90m")
    unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
    before = datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    with _scope() as session:
        ids = [b.id for b in imports.purgeable(session, before)]
    for import_id in ids:
        if not dry_run:
            with _scope() as session:
                imports.purge(session, imports.get_import(session, import_id))
        click.echo(f"{'would purge' if dry_run else 'purged'} import {import_id}")
    click.echo(f"{len(ids)} import(s) {'to purge' if dry_run else 'purged'}")


COMMANDS = (
    import_command,
    transform_command,
    export_command,
    worker_command,
    jobs_cli,
    imports_cli,
)
