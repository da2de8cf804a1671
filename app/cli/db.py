"""`backoffice db ...`: the two migration trees, backups, and moving between single and split
mode."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

from app.cli.context import backoffice
from app.db.schemas import DATA, PRIMARY, EngineRole

if TYPE_CHECKING:
    from app.db.engines import Engines

TREE_CHOICE = click.Choice(["primary", "data", "all"])
ENGINE_CHOICE = click.Choice(["primary", "data"])


def _engines() -> Engines:
    return backoffice().engines


def _trees(which: str) -> tuple[EngineRole, ...]:
    from app.db import migrations

    return migrations.parse_trees(which)


@click.group(
    "db",
    help="Migrations of the two trees (primary: config, customer; data: workspace, reference), "
    "backups, moves between layouts, and the database roles.",
)
def db_cli() -> None:
    pass


@db_cli.command("upgrade")
@click.argument("tree", type=TREE_CHOICE, default="all")
@click.option("--to", "revision", default="heads", show_default=True, help="Target revision.")
@click.option("--preflight", "preflight_only", is_flag=True, help="Only run the checks.")
def db_upgrade(tree: str, revision: str, preflight_only: bool) -> None:
    """Bring a tree (or both, primary first) to its head, after pre-flight checks.

    The checks, for every tree before any runs: the server answers, the database is the one
    recorded for this tree's engine, and which revisions are pending.
    """
    from app.db import migrations

    engines = _engines()
    roles = _trees(tree)
    for role in roles:
        check = migrations.preflight(engines, role)
        pending = ", ".join(reversed(check.status.pending)) or "none"
        click.echo(f"{role}: {check.server}; {check.status.state}; pending: {pending}")
    if preflight_only:
        return
    for role in roles:
        migrations.upgrade(engines, [role], revision)
        st = migrations.status(engines, [role])[0]
        click.echo(f"{role}: at {', '.join(st.current) or 'base'} ({st.state})")


@db_cli.command("downgrade")
@click.argument("tree", type=ENGINE_CHOICE)
@click.argument("revision")
def db_downgrade(tree: EngineRole, revision: str) -> None:
    """Take one tree down to REVISION (`base` removes all of its schemas)."""
    from app.db import migrations

    engines = _engines()
    migrations.downgrade(engines, tree, revision)
    st = migrations.status(engines, [tree])[0]
    click.echo(f"{tree}: at {', '.join(st.current) or 'base'} ({st.state})")


@db_cli.command("status")
@click.argument("tree", type=TREE_CHOICE, default="all")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def db_status(tree: str, as_json: bool) -> None:
    """Current revision against head, per tree (or of one tree)."""
    from app.db import migrations

    statuses = migrations.status(_engines(), _trees(tree))
    if as_json:
        click.echo(json.dumps({st.role: st.as_dict() for st in statuses}))
        return
    for st in statuses:
        extra = f", {len(st.pending)} pending" if st.pending else ""
        click.echo(
            f"{st.role:8} {st.state:8} at {', '.join(st.current) or 'nothing'} "
            f"(head {', '.join(st.heads)}{extra})"
        )


@db_cli.command("check")
@click.argument("tree", type=TREE_CHOICE, default="all")
def db_check(tree: str) -> None:
    """Exit non-zero when a tree is behind or the models and migrations disagree."""
    from app.db import migrations

    problems = migrations.check(_engines(), _trees(tree))
    for role, found in problems.items():
        if found:
            for line in found:
                click.echo(f"{role}: {line}")
        else:
            click.echo(f"{role}: ok")
    if any(problems.values()):
        sys.exit(1)


@db_cli.command("repair")
@click.argument("tree", type=TREE_CHOICE, default="all")
def db_repair(tree: str) -> None:
    """Stamp a tree whose schema matches the models but whose version row is missing or wrong."""
    from app.db import migrations

    for role in _trees(tree):
        click.echo(migrations.repair(_engines(), role))


@db_cli.command("backup")
@click.argument("tree", type=ENGINE_CHOICE)
@click.option(
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="The file to write (pg_dump custom format).",
)
def db_backup(tree: EngineRole, output: str) -> None:
    """Back up one engine's schemas, version table and engine record with pg_dump."""
    from app.db import backup

    path = backup.backup(_engines(), tree, output)
    click.echo(f"{tree}: backed up to {path} ({path.stat().st_size} bytes)")


@db_cli.command("restore")
@click.argument("tree", type=ENGINE_CHOICE)
@click.argument("source", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--replace",
    is_flag=True,
    help="Drop the engine's schemas first when the database is not empty.",
)
def db_restore(tree: EngineRole, source: str, replace: bool) -> None:
    """Restore one engine's backup (refused over existing tables without --replace)."""
    from app.db import backup

    backup.restore(_engines(), tree, source, replace=replace)
    click.echo(f"{tree}: restored from {source}")


def _report_move(report, as_json: bool, environment: dict[str, str]) -> None:
    if as_json:
        click.echo(json.dumps({**report.as_dict(), "environment": environment}))
        return
    for table in report.tables:
        click.echo(f"  {table.table:28} {table.rows:>12,} rows  checksum {table.checksum}  same")
    if report.copied:
        click.echo(
            f"{report.direction}: {len(report.tables)} tables, {report.rows:,} rows copied "
            "and verified"
        )
    else:
        click.echo(f"{report.direction}: already done to {report.target}; nothing copied")
    if report.dropped_old:
        click.echo(f"the old copies in {report.source} are dropped")
    else:
        click.echo(
            f"the old copies in {report.source} are read-only; drop them with --drop-old "
            "once the app runs on the new layout"
        )
    click.echo("Put in the environment (passwords masked), then restart every process:")
    for name, value in environment.items():
        click.echo(f"  {name}={value}")


@db_cli.command("split")
@click.option(
    "--to-primary",
    "to_primary",
    required=True,
    envvar="NEW_PRIMARY_DATABASE_URL",
    help="URL of the new primary database (default: $NEW_PRIMARY_DATABASE_URL, which keeps "
    "its password out of the process list).",
)
@click.option("--drop-old", is_flag=True, help="Drop the old copies once verified.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def db_split(to_primary: str, drop_old: bool, as_json: bool) -> None:
    """Move a single-database deployment to split mode: copy `config` and `customer` to a new,
    empty primary database, verify them, and close the old copies to writers."""
    from app.database_url import parse_database_url
    from app.db import move as layout
    from app.errors import ConfigError

    engines = _engines()
    if engines.split:
        raise ConfigError("db split starts from single mode (SPLIT_DB_MODE=false)")
    target = parse_database_url("--to-primary", to_primary)
    source = click.get_current_context().get_parameter_source("to_primary")
    if target.url.password and source == click.core.ParameterSource.COMMANDLINE:
        click.echo(
            "warning: a password on the command line is visible to every local user (ps); "
            "give the URL in NEW_PRIMARY_DATABASE_URL instead, or leave the password out and "
            "let libpq find it (PGPASSWORD, ~/.pgpass)",
            err=True,
        )
    new_primary = layout.target_engine(target)
    try:
        report = layout.move(
            engines.primary,
            new_primary,
            direction="split",
            drop_old=drop_old,
            source_name=engines.masked_url(PRIMARY),
            target_name=target.masked,
        )
    finally:
        new_primary.dispose()
    environment = {
        "SPLIT_DB_MODE": "true",
        "PRIMARY_DATABASE_URL": target.masked,
        "DATA_DATABASE_URL": engines.masked_url(PRIMARY),
    }
    _report_move(report, as_json, environment)


@db_cli.command("merge")
@click.option("--drop-old", is_flag=True, help="Drop the old primary copies once verified.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def db_merge(drop_old: bool, as_json: bool) -> None:
    """Move a split deployment to one database: copy `config` and `customer` into the data
    database, verify them, and close the old copies to writers."""
    from app.db import move as layout
    from app.errors import ConfigError

    engines = _engines()
    if not engines.split:
        raise ConfigError("db merge starts from split mode (SPLIT_DB_MODE=true)")
    report = layout.move(
        engines.primary,
        engines.data,
        direction="merge",
        drop_old=drop_old,
        source_name=engines.masked_url(PRIMARY),
        target_name=engines.masked_url(DATA),
    )
    environment = {"SPLIT_DB_MODE": "false", "DATABASE_URL": engines.masked_url(DATA)}
    _report_move(report, as_json, environment)


def _role_passwords(
    names: tuple[str, str], from_stdin: bool, missing: dict[str, set[str]], *, print_sql: bool
) -> tuple[dict, dict[str, str]]:
    """(what the script sets per role, the passwords made here to show once). A role made by
    the script gets a random password unless one is given; an existing one keeps its own."""
    from app.db import roles
    from app.errors import ConfigError

    given = [sys.stdin.readline().rstrip("\n") for _ in names] if from_stdin else ["", ""]
    passwords, shown = {}, {}
    for name, password in zip(names, given, strict=True):
        if password:
            passwords[name] = roles.RolePassword(roles.scram_verifier(password), always=True)
        elif print_sql or all(name in m for m in missing.values()):
            shown[name] = roles.new_password()
            passwords[name] = roles.RolePassword(roles.scram_verifier(shown[name]), always=False)
        elif any(name in m for m in missing.values()):
            raise ConfigError(
                f"role {name} exists on one server and not the other: give its password with "
                "--password-stdin, so that both get the same"
            )
    return passwords, shown


@db_cli.command("roles")
@click.option("--owner", required=True, help="The role that owns the schemas and migrates.")
@click.option("--runtime", required=True, help="The role the app and the workers connect as.")
@click.option("--print-sql", is_flag=True, help="Print the SQL per engine; run nothing.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the owner's password, then the runtime role's, a line each, from standard "
    "input (a blank line: keep the role's, or make one for a new role).",
)
def db_roles(owner: str, runtime: str, print_sql: bool, password_stdin: bool) -> None:
    """Create (or bring up to date) the owner and runtime roles on each engine's database.

    Run it as a superuser or the server's administrator, with the usual database URLs. It can
    run any number of times. Passwords of roles it creates are made here and printed once,
    unless given on standard input; they are never taken from the command line."""
    from app.db import roles
    from app.errors import ConfigError
    from app.models.primary.config import AuditEntry

    names = (roles.checked_name(owner), roles.checked_name(runtime))
    if owner == runtime:
        raise ConfigError("the owner and the runtime role must be two roles")
    engines = _engines()
    targets = (PRIMARY, DATA) if engines.split else (PRIMARY,)
    missing: dict[str, set[str]] = {}
    if not print_sql:
        for target in targets:
            with engines.connect(target) as conn:
                missing[target] = set(names) - roles.existing_roles(conn, names)
    passwords, shown = _role_passwords(names, password_stdin, missing, print_sql=print_sql)
    plan = roles.RolePlan(
        owner,
        runtime,
        append_only=(AuditEntry.__table__.fullname,),
        passwords=tuple(passwords.items()),
    )
    for target in targets:
        statements = roles.engine_script(target, plan, split=engines.split)
        if print_sql:
            click.echo(roles.as_text(target, statements, split=engines.split))
            continue
        with engines.begin(target) as conn:
            roles.run_script(conn, statements)
        label = target if engines.split else "database"
        made = ", ".join(n for n in names if n in missing[target]) or "none (both existed)"
        own, _ = roles.engine_schemas(target, split=engines.split)
        click.echo(
            f"{label}: roles {owner} (owner) and {runtime} (runtime) ready on "
            f"{engines.masked_url(target)}, schemas {', '.join(own)}; created: {made}"
        )
    if shown:
        # With --print-sql, stdout is the script (often saved to a file): not the passwords.
        note = " where the script creates the role" if print_sql else ""
        click.echo(f"Passwords, shown this once (set{note}):", err=print_sql)
        for name, password in shown.items():
            click.echo(f"  {name}: {password}", err=print_sql)


@db_cli.command("revision")
@click.argument("tree", type=ENGINE_CHOICE)
@click.option("-m", "--message", required=True)
@click.option("--autogenerate", is_flag=True, help="Compare the models with the database.")
def db_revision(tree: EngineRole, message: str, autogenerate: bool) -> None:
    """Write a new revision file in one tree (developers)."""
    from app.db import migrations

    migrations.revision(_engines(), tree, message, autogenerate=autogenerate)
