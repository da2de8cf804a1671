"""`backoffice import | transform | export | imports ...`: bulk work from a shell.

Commands that create something run the job in this process with a progress bar on stderr,
unless `--async` queues it for the workers. They print what came of it (`--json`: exactly one
JSON object on stdout) and exit non-zero when the job failed or was cancelled.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from app.cli.context import backoffice, in_session
from app.cli.progress import outcome, start

if TYPE_CHECKING:
    from app.db.session import BackofficeSession
    from app.models.data.workspace import ImportBatch
    from app.models.primary.customer import Customer


def _customer(session: BackofficeSession, code: str) -> Customer:
    from app.customers.service import find_by_code

    customer = find_by_code(session, code)
    if customer is None:
        raise click.ClickException(f"no customer with code {code}")
    return customer


def _rows(n: int) -> str:
    return f"{n:,} row{'' if n == 1 else 's'}"


# The options the three bulk commands share.
queue_it = click.option("--async", "run_async", is_flag=True, help="Queue it for the workers.")
one_json = click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")


# -- import ----------------------------------------------------------------------------------


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True))
@click.option("--customer", "customer_code", required=True, help="The customer's code.")
@click.option("--encoding", help="The file's encoding (default UTF-8).")
@click.option("--delimiter", help="One of , ; tab | (default: detected from the header).")
@queue_it
@one_json
def import_command(file, customer_code, encoding, delimiter, run_async, as_json) -> None:
    """Stage a CSV FILE for a customer into the workspace."""
    from app.imports import service as imports

    bo = backoffice()
    local_path = os.path.realpath(file)

    def stage(session: BackofficeSession) -> ImportBatch:
        customer = _customer(session, customer_code)
        options = dict(
            customer_id=customer.id,
            created_by=None,
            file_name=file,
            encoding=encoding,
            delimiter=delimiter,
            max_attempts=bo.settings.job_max_attempts,
        )
        if run_async:  # a worker on another host must be able to read the bytes
            with open(file, "rb") as handle:
                batch = imports.receive(
                    session,
                    bo.references,
                    stream=handle,
                    size_limit=bo.settings.max_upload_bytes,
                    **options,
                )
        else:  # the job runs here and reads the file where it is
            batch = imports.receive(
                session, bo.references, stream=None, local_path=local_path, size_limit=0, **options
            )
        return batch

    batch = in_session(stage)
    start(
        "import",
        batch,
        imports.get_import,
        run_async=run_async,
        as_json=as_json,
        label="staging",
        summarize=_say_import,
        files=() if run_async else (local_path,),
        file_name=batch.file_name,
        size_bytes=batch.size_bytes,
    )


def _say_import(payload: dict[str, Any]) -> list[str]:
    batch, job = payload["import"], payload["job"]
    line = outcome("import", batch, job)
    if line is None:
        rows = _rows(batch["rows_staged"])
        return [f"import {batch['id']} staged: {rows} of {batch['file_name']}"]
    return [line] + (
        [f"see: backoffice imports errors {batch['id']}"] if job["status"] == "failed" else []
    )


# -- export ----------------------------------------------------------------------------------


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
@queue_it
@one_json
def export_command(
    dataset, customer_code, output, gzipped, neutralize_formulas, run_async, as_json
) -> None:
    """Write a dataset's rows for a customer as CSV, in key order, with a header row."""
    from app.exports import service as exports

    bo = backoffice()
    output = os.path.abspath(output)
    folder = exports.export_dir(bo.settings, bo.instance_path)
    if run_async and not _inside(output, folder):
        raise click.BadParameter(
            f"with --async a worker writes the file, and workers write only inside EXPORT_DIR "
            f"({folder}); give a path there, or leave out --async",
            param_hint="--output",
        )

    def create(session):
        customer = _customer(session, customer_code)
        return exports.create(
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

    export = in_session(create)

    def summarize(payload: dict[str, Any]) -> list[str]:
        made = payload["export"]
        line = outcome("export", made, payload["job"])
        if line is None:
            return [f"export {made['id']}: {_rows(made['rows'])} written to {output}"]
        return [line] + ([f"the worker writes {output}"] if not made["finished_at"] else [])

    start(
        "export",
        export,
        exports.get,
        run_async=run_async,
        as_json=as_json,
        label="exporting",
        summarize=summarize,
        files=(output,),
        dataset=dataset,
        format=export.format,
        neutralize_formulas=neutralize_formulas,
        output=output,
    )


def _inside(path: str, folder) -> bool:
    parent, root = os.path.realpath(os.path.dirname(path)), os.path.realpath(folder)
    return parent == root or parent.startswith(root + os.sep)


# -- imports errors, imports purge -----------------------------------------------------------


@click.group("imports", help="Manage staged imports.")
def imports_cli() -> None:
    pass


@imports_cli.command("errors")
@click.argument("import_id", type=int)
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def imports_errors(import_id: int, limit: int, as_json: bool) -> None:
    """What is wrong in an import: why it failed, and the rows its transforms rejected."""
    from app.imports import service as imports

    def read(session):
        batch = imports.get_import(session, import_id)
        return imports.import_errors(session, batch, offset=0, limit=limit)

    errors, total = in_session(read)
    if as_json:
        click.echo(json.dumps({"errors": errors, "total": total}))
        return
    for error in errors:
        where = f"line {error['line']}" if error.get("line") else "file"
        column = f", {error['column']}" if error.get("column") else ""
        value = f" ({error['value']!r})" if error.get("value") is not None else ""
        click.echo(f"{where}{column}: {error['message']}{value}")
    if total > len(errors):
        click.echo(f"... {total - len(errors)} more (--limit)")


@imports_cli.command("purge")
@click.option("--older-than", "age", required=True, help="An age: 30d, 12h, 90m.")
@click.option("--dry-run", is_flag=True)
def imports_purge(age: str, dry_run: bool) -> None:
    """Drop staged rows and stored files of imports older than AGE (their records stay)."""
    match = re.fullmatch(r"(\d+)([dhm])", age.strip())
    if not match:
        raise click.BadParameter("use a number and d, h or m: 30d, 12h, 90m")
    unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
    before = datetime.now(UTC) - timedelta(**{unit: int(match.group(1))})
    from app.imports import service as imports

    def purge(session) -> list[int]:
        purged = imports.purge_older_than(session, before, dry_run=dry_run)
        return [batch.id for batch in purged]

    ids = in_session(purge)
    for import_id in ids:
        click.echo(f"{'would purge' if dry_run else 'purged'} import {import_id}")
    click.echo(f"{len(ids)} import(s) {'to purge' if dry_run else 'purged'}")
