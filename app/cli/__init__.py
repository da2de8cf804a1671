"""The `backoffice` command; `flask --app app ...` carries the same commands.

The group names its commands and imports a command's module only when the command is looked
up (click's "lazily loading subcommands"), and the modules import the services inside their
commands: `backoffice --help` and `--version` load neither Flask nor SQLAlchemy, and a command
builds the engines and sessions it needs, not the web app (only `serve` does).

    app/cli/context.py    the backoffice of this process, `in_session`, the shell's actor
    app/cli/db.py         db upgrade | downgrade | status | check | repair | backup | restore
                          | split | merge | roles | revision
    app/cli/server.py     serve, doctor
    app/cli/users.py      users ...
    app/cli/customers.py  customers create | list
    app/cli/bulk.py       import, transform, export, imports errors | purge
    app/cli/progress.py   a bulk job: audited, run here with a progress bar or queued; its outcome
    app/cli/jobs.py       worker, jobs list | show | cancel
    app/cli/prune.py      prune
    app/cli/demo.py       demo
    app/cli/verify.py     verify
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

import click

from app.cli.context import CliContext, refusal_message

if TYPE_CHECKING:
    from flask import Flask

# name -> "module:attribute", in the order of README's table.
COMMANDS: dict[str, str] = {
    "serve": "app.cli.server:serve",
    "db": "app.cli.db:db_cli",
    "doctor": "app.cli.server:doctor",
    "users": "app.cli.users:users_cli",
    "import": "app.cli.bulk:import_command",
    "transform": "app.cli.transforms:transform_command",
    "export": "app.cli.bulk:export_command",
    "imports": "app.cli.bulk:imports_cli",
    "transforms": "app.cli.transforms:transforms_cli",
    "worker": "app.cli.jobs:worker_command",
    "jobs": "app.cli.jobs:jobs_cli",
    "customers": "app.cli.customers:customers_cli",
    "prune": "app.cli.prune:prune_command",
    "demo": "app.cli.demo:demo_command",
    "verify": "app.cli.verify:verify_command",
}


def load_command(target: str) -> click.Command:
    module, _, attribute = target.partition(":")
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command), target
    return command


class LazyGroup(click.Group):
    """A group whose commands are imported when looked up, not when the group is built."""

    def __init__(self, *args, lazy_commands: Mapping[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            return load_command(self.lazy_commands[cmd_name])
        return super().get_command(ctx, cmd_name)


def _find_upwards(name: str) -> str | None:
    """The file from the working folder up to the root, as python-dotenv's find_dotenv."""
    folder = os.path.abspath(os.getcwd())
    while True:
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def load_env(env_file: str | None) -> None:
    """What `flask` reads before a command: `.flaskenv`, then `.env` (found from the working
    folder up), then `--env-file`, each over the one before; a variable already set in the
    environment wins over all of them."""
    files = [found for name in (".flaskenv", ".env") if (found := _find_upwards(name))]
    if env_file is not None:
        files.append(env_file)
    if not files:
        return  # python-dotenv costs a bulk command 10 ms to import: only when there is a file
    import dotenv

    values: dict[str, str | None] = {}
    for path in files:
        values |= dotenv.dotenv_values(path, encoding="utf-8")
    for key, value in values.items():
        if key not in os.environ and value is not None:
            os.environ[key] = value


@click.group(
    "backoffice",
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    help="The backoffice: serve it, migrate its two databases, run its jobs.",
)
@click.version_option(package_name="backoffice", message="%(prog)s %(version)s")
@click.option(
    "-e",
    "--env-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Load environment variables from this file, over those of '.env' and '.flaskenv'. "
    "Variables set in the environment win over both.",
)
@click.pass_context
def cli(ctx: click.Context, env_file: str | None) -> None:
    load_env(env_file)
    ctx.obj = CliContext()


def register_commands(app: Flask) -> None:
    """For `flask --app app ...`; the `backoffice` group carries the same commands itself."""
    for name, target in COMMANDS.items():
        app.cli.add_command(load_command(target), name)


def main() -> None:
    """Console entry point: configuration and connection problems are one line, not a trace.
    The cycle collector is off until the command has built what it uses (`collect_again`)."""
    gc.disable()
    try:
        cli.main(prog_name="backoffice")
    except Exception as exc:
        message = refusal_message(exc)
        if message is None:
            raise
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)
    finally:
        # The interpreter's teardown would walk every object the ORM made: a tenth of a second
        # for a one-row import. What must be closed is closed by atexit (the engines, the
        # listener, an embedded server); the process's exit frees the rest.
        gc.freeze()
