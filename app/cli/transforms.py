"""The transform commands: `transform` (and its preview, `--dry-run`) and `transforms revert`."""

from __future__ import annotations

import json
from typing import Any

import click

from app.cli.bulk import one_json, queue_it
from app.cli.context import backoffice, cli_actor, in_session
from app.cli.progress import outcome, start


def _parse_mapping(mappings: tuple[str, ...], cleared: tuple[str, ...]) -> dict[str, str | None]:
    mapping: dict[str, str | None] = {}
    for item in mappings:
        column, sep, header = item.partition("=")
        if not sep or not column:
            raise click.BadParameter(f"{item!r}: use COLUMN=HEADER", param_hint="--map")
        mapping[column.strip()] = header
    for column in cleared:
        if column.strip() in mapping:
            raise click.BadParameter(f"{column!r} is both mapped and cleared", param_hint="--clear")
        mapping[column.strip()] = None
    return mapping


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
    "--clear",
    "cleared",
    multiple=True,
    metavar="COLUMN",
    help="Empty this column on the rows the transform updates (repeatable). A column the file "
    "does not map is otherwise left as stored.",
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
@queue_it
@one_json
def transform_command(
    import_id, dataset, mappings, cleared, max_rejects, dry_run, run_async, as_json
) -> None:
    """Cast a staged import into a dataset's reference table for its customer."""
    from app.transforms import service as transforms

    mapping = _parse_mapping(mappings, cleared) or None
    bo = backoffice()
    if dry_run:
        if run_async:
            raise click.BadParameter("a dry run runs here at once", param_hint="--async")

        def preview(session):
            found = transforms.preview(
                session,
                bo.references,
                import_id=import_id,
                dataset=dataset,
                mapping=mapping,
                max_rejects=max_rejects,
            )
            session.rollback()
            return found

        _print_preview(in_session(preview), as_json)
        return
    transform = in_session(
        lambda session: transforms.create(
            session,
            bo.references,
            import_id=import_id,
            dataset=dataset,
            mapping=mapping,
            max_rejects=max_rejects,
            created_by=None,
            max_attempts=bo.settings.job_max_attempts,
        )
    )
    start(
        "transform",
        transform,
        transforms.get,
        run_async=run_async,
        as_json=as_json,
        label="transforming",
        summarize=_say_transform,
        import_id=import_id,
        dataset=dataset,
    )


COUNTS = ("inserted", "updated", "unchanged", "rejected", "superseded")


def _say_transform(payload: dict[str, Any]) -> list[str]:
    made, job = payload["transform"], payload["job"]
    line = outcome("transform", made, job)
    done = f"transform {made['id']} of import {made['import_id']} into {made['dataset']} succeeded"
    lines = [line or done, *_said_columns(made["columns"])] if made["columns"] else [line or done]
    if "rejected" in made:  # the counts, once it ran (a refused transform counts its rejects too)
        lines.append(", ".join(f"{name} {made.get(name, 0):,}" for name in COUNTS))
        if made["rejected"]:
            lines.append(f"rejected rows: backoffice imports errors {made['import_id']}")
    return lines


def _said_columns(use: dict[str, list[str]]) -> list[str]:
    """Which columns a transform writes, clears and leaves as stored, one line each."""
    said = [f"written: {', '.join(use['written'])}"]
    if use["cleared"]:
        said.append(f"cleared: {', '.join(use['cleared'])}")
    said.append(f"left as stored: {', '.join(use['untouched']) or 'none'}")
    return said


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
    for line in _said_columns(found.columns):
        click.echo(line)
    if found.changes:
        changed = ", ".join(f"{n} {c:,}" for n, c in found.changed_columns.items() if c)
        click.echo(f"stored values that would change: {changed}")
    for change in found.changes:
        key = ", ".join(f"{k}={v}" for k, v in change["key"].items())
        for name, pair in change["fields"].items():
            click.echo(f"line {change['line']}, {key}: {name}: {pair['from']!r} -> {pair['to']!r}")
    if found.counts["updated"] > len(found.changes):
        click.echo("... the first changed rows only")
    if found.over_max_rejects:
        click.echo(f"more than --max-rejects {found.max_rejects}: the transform would fail")
    for r in found.rejects:
        click.echo(f"line {r['line']}, {r['column']}: {r['value']!r}: {r['reason']}")
    if found.counts["rejected"] > len({r["line"] for r in found.rejects}):
        click.echo("... the first rejected rows only")


@click.group("transforms")
def transforms_cli() -> None:
    """Published transforms: revert one."""


@transforms_cli.command("revert")
@click.argument("transform_id", type=int)
@click.option("--yes", is_flag=True, help="Revert without asking.")
@queue_it
@one_json
def transforms_revert(transform_id: int, yes: bool, run_async: bool, as_json: bool) -> None:
    """Put the rows a transform touched back as they were before it (its inserts deleted, its
    updates and clears undone), in one job published at once."""
    from app.transforms import revert
    from app.transforms import service as transforms

    bo = backoffice()
    days = bo.settings.transform_history_days

    def check(session):
        target = transforms.get(session, transform_id)
        revert.refuse_unless_revertible(session, target, days)
        return revert.revertible_rows(target), target.dataset

    rows, dataset = in_session(check)
    if not yes:
        click.confirm(
            f"Revert transform {transform_id}: put {rows:,} row(s) of {dataset} back as they "
            "were before it?",
            abort=True,
        )
    made = in_session(
        lambda session: revert.create(
            session,
            bo.references,
            transform_id=transform_id,
            history_days=days,
            created_by=None,
            max_attempts=bo.settings.job_max_attempts,
        )
    )
    start(
        "transform",
        made,
        transforms.get,
        run_async=run_async,
        as_json=as_json,
        label="reverting",
        summarize=_say_revert,
        action="transform.revert",
        reverts_id=transform_id,
        dataset=dataset,
    )


def _say_revert(payload: dict[str, Any]) -> list[str]:
    made, job = payload["transform"], payload["job"]
    line = outcome("transform", made, job)
    if line is not None:
        return [line]
    return [
        f"transform {made['id']} reverted transform {made['reverts_id']}: "
        + ", ".join(
            f"{name} {made.get(name, 0):,}" for name in ("restored", "deleted", "reinserted")
        )
    ]


@transforms_cli.command("rejects")
@click.argument("transform_id", type=int)
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write the CSV (- for standard output).",
)
def transforms_rejects(transform_id: int, output: str) -> None:
    """Write a transform's rejected rows as a CSV to fix and import again: the import's
    columns as staged, then _line, _column, _reason."""
    from app.models.data.workspace import ImportBatch
    from app.transforms import rejects
    from app.transforms import service as transforms

    bo = backoffice()

    def write(session) -> int:
        record = transforms.get(session, transform_id)
        batch = session.get_or_404(ImportBatch, record.import_id, "import")
        pieces = rejects.rejects_csv(session, bo.engines, record, batch)
        cli_actor().audit(
            session,
            "transform.rejects_download",
            target_type="transform",
            target_id=record.id,
            customer_id=record.customer_id,
            import_id=record.import_id,
        )
        with click.open_file(output, "wb") as out:
            for piece in pieces:
                out.write(piece)
        return rejects.rejected_rows(session, record)

    rows = in_session(write)
    if output != "-":
        click.echo(f"{rows:,} rejected row(s) of transform {transform_id} written to {output}")
