"""The two Alembic trees: which schemas each owns, and running them one after the other.

`migrations_primary/` owns the primary engine's schemas and `migrations_data/` the data
engine's, as the schema-to-engine map says. Each keeps its version table in `public` under its
own name. They never run interleaved: primary first, committed, then data, so single mode (one
database) cannot deadlock. Each database records which engine it serves the first time a tree
runs on it, and a tree refuses a database recorded for the other engine in split mode.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, inspect, text

from app.db.base import metadata_of
from app.db.engines import Engines
from app.db.schemas import DATA, ENGINE_ROLES, PRIMARY, EngineRole, schemas_of
from app.errors import ConfigError

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

# alembic is imported where it is used: with Mako and Pygments behind it, it costs about 100 ms
# at the start of every command that does not migrate (`backoffice import`, the workers).

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TREE_DIRS: dict[EngineRole, str] = {PRIMARY: "migrations_primary", DATA: "migrations_data"}
VERSION_TABLES: dict[EngineRole, str] = {
    PRIMARY: "alembic_version_primary",
    DATA: "alembic_version_data",
}
VERSION_SCHEMA = "public"
ROLE_TABLE = "backoffice_engine_roles"
# The jobs' own tables: an import's staged rows (per attempt until published), whose shape is
# the file's, and a transform attempt's cast rows (one partition per batch), dropped at its publish.
STAGING_TABLE = re.compile(r"^(import_[0-9]+(_a[0-9]+)?|transform_[0-9]+_a[0-9]+(_p[0-9]+)?)$")


class WrongDatabase(ConfigError):
    """A tree was pointed at the database of the other engine."""


class MigrationRefused(ConfigError):
    """`db repair` found a live schema that does not match the models."""


def parse_trees(which: str) -> tuple[EngineRole, ...]:
    if which == "all":
        return ENGINE_ROLES
    if which in ENGINE_ROLES:
        return (which,)  # type: ignore[return-value]
    raise ConfigError(f"unknown migration tree {which!r}: choose primary, data or all")


def include_name_for(role: EngineRole) -> Callable[[str | None, str, Any], bool]:
    """Autogenerate and drift checks look only at the schemas this tree owns."""
    owned = set(schemas_of(role))

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name in owned
        if type_ == "table" and name and STAGING_TABLE.match(name):
            return parent_names.get("schema_name") != "workspace"  # an import's, not a model's
        return True

    return include_name


def context_options(role: EngineRole) -> dict[str, Any]:
    """Options shared by env.py and the read-only checks, so both see the same tree."""
    return {
        "target_metadata": metadata_of(role),
        "version_table": VERSION_TABLES[role],
        "version_table_schema": VERSION_SCHEMA,
        "include_schemas": True,
        "include_name": include_name_for(role),
        "compare_type": True,
        "compare_server_default": True,
    }


def alembic_config(
    role: EngineRole, *, split: bool, connection: Connection | None = None
) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / TREE_DIRS[role]))
    cfg.set_main_option("file_template", "%%(year)d%%(month).2d%%(day).2d_%%(rev)s_%%(slug)s")
    cfg.attributes.update(engine_role=role, split_mode=split, connection=connection)
    return cfg


def script_directory(role: EngineRole) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(role, split=False))


# -- database roles -------------------------------------------------------------------------


def recorded_roles(conn: Connection) -> set[str]:
    if not inspect(conn).has_table(ROLE_TABLE, schema=VERSION_SCHEMA):
        return set()
    rows = conn.execute(text(f"SELECT engine FROM {VERSION_SCHEMA}.{ROLE_TABLE}"))
    return {row[0] for row in rows}


def check_role(conn: Connection, role: EngineRole, *, split: bool) -> None:
    """Refuse, in split mode, a database recorded as serving the other engine."""
    if not split:
        return
    other = [r for r in recorded_roles(conn) if r != role]
    if other:
        database = conn.execute(text("SELECT current_database()")).scalar_one()
        raise WrongDatabase(
            f"database {database!r} serves the {other[0]} engine; the {role} tree does not "
            f"belong there (check {'PRIMARY' if role == PRIMARY else 'DATA'}_DATABASE_URL)"
        )


def record_role(conn: Connection, role: EngineRole, *, split: bool) -> None:
    """Check, then remember, which engine this database serves. Runs in the tree's transaction."""
    # Migrations of one tree wait for each other instead of racing (a transaction-level lock,
    # which PgBouncer's transaction mode allows).
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"migrate:{role}"})
    check_role(conn, role, split=split)
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {VERSION_SCHEMA}.{ROLE_TABLE} ("
            "engine text PRIMARY KEY, recorded_at timestamptz NOT NULL DEFAULT now())"
        )
    )
    conn.execute(
        text(
            f"INSERT INTO {VERSION_SCHEMA}.{ROLE_TABLE} (engine) VALUES (:r) ON CONFLICT DO NOTHING"
        ),
        {"r": role},
    )


def run_env() -> None:
    """The body of both trees' env.py: configure from what the runner put on the config."""
    from alembic import context

    cfg = context.config
    role: EngineRole = cfg.attributes["engine_role"]
    conn: Connection | None = cfg.attributes.get("connection")
    if context.is_offline_mode() or conn is None:
        raise ConfigError("run the migrations through `backoffice db ...`, which connects them")
    context.configure(connection=conn, **context_options(role))
    with context.begin_transaction():
        record_role(conn, role, split=cfg.attributes["split_mode"])
        context.run_migrations()


# -- status, check, repair ------------------------------------------------------------------


@dataclass
class TreeStatus:
    role: EngineRole
    current: tuple[str, ...]
    heads: tuple[str, ...]
    pending: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # revisions in the database, not the code

    @property
    def state(self) -> str:
        if self.unknown:
            return "ahead"  # the database was migrated by newer code
        if not self.current:
            return "empty"
        return "behind" if self.pending else "current"

    @property
    def is_current(self) -> bool:
        return self.state == "current"

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "current": list(self.current),
            "head": list(self.heads),
            "pending": len(self.pending),
        }


def tree_status(conn: Connection, role: EngineRole) -> TreeStatus:
    from alembic.runtime.migration import MigrationContext
    from alembic.util.exc import CommandError

    script = script_directory(role)
    context = MigrationContext.configure(
        conn,
        opts={"version_table": VERSION_TABLES[role], "version_table_schema": VERSION_SCHEMA},
    )
    current = tuple(context.get_current_heads())
    heads = tuple(script.get_heads())
    known, unknown = [], []
    for rev in current:
        try:
            script.get_revision(rev)
            known.append(rev)
        except CommandError:
            unknown.append(rev)
    pending: list[str] = []
    if not unknown:
        lower = tuple(known) or "base"
        pending = [
            r.revision for r in script.iterate_revisions(heads, lower) if r.revision not in known
        ]
    return TreeStatus(role, current, heads, pending, unknown)


def status(engines: Engines, trees: Iterable[EngineRole] = ENGINE_ROLES) -> list[TreeStatus]:
    result = []
    for role in trees:
        with engines.connect(role) as conn:
            result.append(tree_status(conn, role))
    return result


def schema_drift(conn: Connection, role: EngineRole) -> list[str]:
    """What differs between the live schema and the models, one line each."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    context = MigrationContext.configure(conn, opts=context_options(role))
    lines = [f"missing schema {s}" for s in sorted(set(schemas_of(role)) - _live_schemas(conn))]
    for diff in compare_metadata(context, context_options(role)["target_metadata"]):
        lines.append(_describe(diff))
    return lines


def _live_schemas(conn: Connection) -> set[str]:
    return set(conn.execute(text("SELECT nspname FROM pg_namespace")).scalars())


def _describe(diff: Any) -> str:
    if isinstance(diff, list):  # column modifications come grouped
        return "; ".join(_describe(d) for d in diff)
    op, *rest = diff
    names = []
    for item in rest:
        name = getattr(item, "name", None)
        table = getattr(item, "table", None)
        if name and table is not None:
            names.append(f"{table.fullname}.{name}")
        elif name or getattr(item, "fullname", None):
            names.append(getattr(item, "fullname", None) or name)
        elif isinstance(item, str):
            names.append(item)
    return f"{op.replace('_', ' ')} {' '.join(n for n in names if n)}".strip()


def check(
    engines: Engines, trees: Iterable[EngineRole] = ENGINE_ROLES
) -> dict[EngineRole, list[str]]:
    """Problems per tree: behind or ahead of the code, and model drift. Empty means healthy."""
    problems: dict[EngineRole, list[str]] = {}
    for role in trees:
        with engines.connect(role) as conn:
            st = tree_status(conn, role)
            found = []
            if not st.is_current:
                found.append(
                    f"migrations {st.state}: database at {list(st.current) or 'nothing'}, "
                    f"code at {list(st.heads)}"
                )
            found += [f"model drift: {line}" for line in schema_drift(conn, role)]
        problems[role] = found
    return problems


@dataclass
class Preflight:
    role: EngineRole
    server: str  # server version and database name
    status: TreeStatus


def preflight(engines: Engines, role: EngineRole) -> Preflight:
    """Before migrating: the server answers, it is the right database, what would run."""
    with engines.connect(role) as conn:
        check_role(conn, role, split=engines.split)
        server = conn.execute(
            text("SELECT current_setting('server_version'), current_database()")
        ).one()
        st = tree_status(conn, role)
    if st.unknown:
        raise ConfigError(
            f"{role}: the database is at {', '.join(st.unknown)}, which this code does not know "
            "(newer code migrated it); deploy that code or downgrade with it"
        )
    return Preflight(role, f"PostgreSQL {server[0]}, database {server[1]!r}", st)


def upgrade(
    engines: Engines, trees: Iterable[EngineRole] = ENGINE_ROLES, revision: str = "heads"
) -> None:
    """Bring trees to `revision`, one after the other, each in its own committed transaction."""
    from alembic import command

    for role in trees:
        with engines.begin(role) as conn:
            command.upgrade(alembic_config(role, split=engines.split, connection=conn), revision)


def upgrade_connection(conn: Connection, role: EngineRole, *, split: bool) -> None:
    """Bring one tree to head on a connection of the caller's (which commits)."""
    from alembic import command

    command.upgrade(alembic_config(role, split=split, connection=conn), "heads")


def downgrade(engines: Engines, role: EngineRole, revision: str) -> None:
    from alembic import command

    with engines.begin(role) as conn:
        command.downgrade(alembic_config(role, split=engines.split, connection=conn), revision)


def repair(engines: Engines, role: EngineRole) -> str:
    """Stamp head on a database whose schema matches the models but whose version is missing."""
    from alembic import command

    with engines.begin(role) as conn:
        check_role(conn, role, split=engines.split)
        st = tree_status(conn, role)
        if st.is_current:
            return f"{role}: already at {', '.join(st.heads)}, nothing to repair"
        drift = schema_drift(conn, role)
        if drift:
            raise MigrationRefused(
                f"{role}: the live schema differs from the models, so stamping would hide it:\n  "
                + "\n  ".join(drift)
            )
        command.stamp(
            alembic_config(role, split=engines.split, connection=conn), "heads", purge=True
        )
        return (
            f"{role}: stamped {', '.join(st.heads)} (was {', '.join(st.current) or 'no version'})"
        )


def revision(engines: Engines, role: EngineRole, message: str, *, autogenerate: bool) -> None:
    from alembic import command

    with engines.begin(role) as conn:
        command.revision(
            alembic_config(role, split=engines.split, connection=conn),
            message=message,
            autogenerate=autogenerate,
        )
