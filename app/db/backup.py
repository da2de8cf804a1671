"""Backup and restore, per engine, with pg_dump and pg_restore (custom format).

An engine's backup holds its schemas (from the schema-to-engine map) and its migration version
table, and nothing of the other engine's, so the two can be
backed up on their own schedules and restored to either layout. A restore refuses a database
that already holds tables in those schemas unless told to replace them.

The tools get the database's password in their environment (PGPASSWORD), never on their command
line: every local user can read a process's command line (`ps`), only its owner its environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import text

from app.database_url import DatabaseTarget
from app.db.embedded_host import find_bin_dir
from app.db.engines import Engines
from app.db.migrations import ROLE_TABLE, VERSION_SCHEMA, VERSION_TABLES, record_role
from app.db.schemas import EngineRole, schemas_of
from app.errors import ConfigError


def _tool(name: str) -> str:
    """pg_dump / pg_restore: from the same place as the embedded server, else the PATH."""
    try:
        candidate = find_bin_dir() / name
        if candidate.exists():
            return str(candidate)
    except ConfigError:
        pass
    found = shutil.which(name)
    if not found:
        raise ConfigError(f"{name} was not found: install the PostgreSQL client tools")
    return found


def _selection(role: EngineRole) -> list[str]:
    args = []
    for schema in schemas_of(role):
        args += ["--schema", schema]
    # `--table` would make pg_dump ignore `--schema`: take `public` whole instead, without what
    # is not this engine's (the other tree's version table, the database's engine record).
    others = [t for r, t in VERSION_TABLES.items() if r != role] + [ROLE_TABLE]
    args += ["--schema", VERSION_SCHEMA]
    for table in others:
        args += ["--exclude-table", f"{VERSION_SCHEMA}.{table}"]
    return args


def _connection(target: DatabaseTarget) -> tuple[str, dict[str, str]]:
    """The target as a libpq URL without its password, and the environment that carries it."""
    url = target.url.set(drivername="postgresql")
    query = dict(url.query)
    password = url.password or query.pop("password", None)
    env = {"PGPASSWORD": str(password)} if password else {}
    # `set(password=None)` would mean "unchanged": the URL is a named tuple, replace the field.
    url = url._replace(password=None).set(query=query)
    return url.render_as_string(hide_password=False), env


def _run(command: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PGCONNECT_TIMEOUT": "10", **env},
    )
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["failed"]
        message = next((line for line in lines if "error:" in line), lines[-1])
        raise ConfigError(f"{Path(command[0]).name}: {message}")


def backup(engines: Engines, role: EngineRole, output: str | Path) -> Path:
    """Write the engine's part of its database to `output` (custom format), atomically."""
    output = Path(output)
    part = output.with_name(f".{output.name}.part")
    dbname, env = _connection(engines.targets[role])
    try:
        _run(
            [
                _tool("pg_dump"),
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--file={part}",
                *_selection(role),
                f"--dbname={dbname}",
            ],
            env,
        )
        os.replace(part, output)
    finally:
        part.unlink(missing_ok=True)
    return output


def tables_in(engines: Engines, role: EngineRole) -> int:
    """Tables in the engine's schemas, plus its version table when it holds a version."""
    with engines.connect(role) as conn:
        tables = conn.execute(
            text("SELECT count(*) FROM pg_tables WHERE schemaname = ANY(:schemas)"),
            {"schemas": list(schemas_of(role))},
        ).scalar_one()
        return tables + (1 if migrations_recorded(conn, role) else 0)


def migrations_recorded(conn, role: EngineRole) -> bool:
    table = VERSION_TABLES[role]
    if conn.execute(text("SELECT to_regclass(:t)"), {"t": f"{VERSION_SCHEMA}.{table}"}).scalar():
        return bool(conn.execute(text(f"SELECT count(*) FROM {VERSION_SCHEMA}.{table}")).scalar())
    return False


def restore(engines: Engines, role: EngineRole, source: str | Path, *, replace: bool) -> None:
    """Restore an engine's backup. Refused over existing tables unless `replace`."""
    existing = tables_in(engines, role)
    if existing and not replace:
        raise ConfigError(
            f"the {role} database ({engines.masked_url(role)}) already has {existing} table(s) "
            f"in {', '.join(schemas_of(role))}; restore into an empty database, or pass "
            "--replace to drop and replace them"
        )
    with engines.begin(role) as conn:
        if replace:
            for schema in schemas_of(role):
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        # The version table comes with the backup; an empty one (a tree taken down to base)
        # holds nothing and would be in the way.
        conn.execute(text(f'DROP TABLE IF EXISTS {VERSION_SCHEMA}."{VERSION_TABLES[role]}"'))
    # Every database has `public`: restore what the backup holds in it, not the schema itself.
    listing = subprocess.run(
        [_tool("pg_restore"), "--list", str(source)], capture_output=True, text=True, check=False
    )
    if listing.returncode != 0:
        raise ConfigError(f"pg_restore: {source} is not a backup made by `db backup`")
    contents = Path(str(source) + ".list")
    contents.write_text(
        "".join(
            line + "\n"
            for line in listing.stdout.splitlines()
            if f" SCHEMA - {VERSION_SCHEMA} " not in line
        )
    )
    try:
        _restore(engines, role, source, contents)
    finally:
        contents.unlink(missing_ok=True)
    with engines.begin(role) as conn:  # the engine record is the database's, not the backup's
        record_role(conn, role, split=engines.split)


def _restore(engines: Engines, role: EngineRole, source: str | Path, contents: Path) -> None:
    dbname, env = _connection(engines.targets[role])
    _run(
        [
            _tool("pg_restore"),
            f"--use-list={contents}",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={dbname}",
            str(source),
        ],
        env,
    )
