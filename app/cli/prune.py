"""`backoffice prune`: delete what is past its retention (app/retention.py)."""

from __future__ import annotations

import json

import click

from app.cli.context import backoffice, cli_actor, one_line_errors

LABELS = {
    "sessions": "sessions",
    "api_tokens": "API tokens",
    "login_throttle": "login-throttle rows",
    "transform_errors": "transform errors",
    "jobs": "jobs",
    "export_files": "export files",
}


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option(
    "--batch-size",
    default=5000,
    show_default=True,
    type=click.IntRange(1),
    help="Rows deleted per transaction.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as one JSON object.")
def prune_command(dry_run: bool, batch_size: int, as_json: bool) -> None:
    """Delete ended sessions and API tokens, old login-throttle rows, ended jobs, transform
    errors and export files past their retention (PRUNE_*_DAYS). Never the audit log."""
    from app import retention

    with one_line_errors():
        counts = retention.prune(
            backoffice(), actor=cli_actor(), dry_run=dry_run, batch_size=batch_size
        )
    if as_json:
        click.echo(json.dumps({"dry_run": dry_run, "counts": counts}))
        return
    verb = "would be deleted (dry run)" if dry_run else "deleted"
    for kind, count in counts.items():
        # A dataset's history (`products_history`) is named by its table.
        click.echo(f"{LABELS.get(kind, kind.replace('_', ' '))}: {count} {verb}")
