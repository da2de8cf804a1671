"""`backoffice verify`: prove the configured deployment works, end to end."""

from __future__ import annotations

import json
import sys
import time

import click

from app.cli.context import cli_actor, flask_app, one_line_errors


@click.command("verify")
@click.option(
    "--keep",
    is_flag=True,
    help="Keep the scratch customer with its import, transform and export, to look at "
    "(the scratch user is removed all the same).",
)
@click.option(
    "--worker-wait",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds the import's job waits for a worker to claim it before it runs here.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def verify_command(keep: bool, worker_wait: float, as_json: bool) -> None:
    """Check the deployment end to end: both engines reachable and migrated, a change notice
    between two connections, a sign-in and a cached session check, an import, a transform and
    an export for a scratch customer (a worker running the import when one is up). Each step
    is printed with its time; the first failure stops the run, names the engine and exits 1.
    What the run made is removed afterwards, after a failure too."""
    from app.verify.run import Verification

    started = time.perf_counter()
    with one_line_errors():
        app = flask_app()
    run = Verification(
        app,
        cli_actor(),
        keep=keep,
        worker_wait=worker_wait,
        on_step=None if as_json else lambda result: click.echo(result.line()),
    )
    run.run()
    if as_json:
        click.echo(json.dumps(run.as_dict()))
    else:
        for name, value in run.left_behind().items():
            click.echo(f"{'kept' if keep else 'left behind'}: {name} {value}")
    failure = run.failure
    if failure is not None:
        click.echo(
            f"verify failed: {failure.label} ({failure.engine} engine): {failure.error}", err=True
        )
        sys.exit(1)
    if not as_json:
        click.echo(f"verified in {time.perf_counter() - started:.1f} s")
