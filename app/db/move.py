"""Moving the primary engine's schemas between layouts: `db split` and `db merge`.

Split takes a single-database deployment to two databases: the primary schemas (`config`,
`customer`) are copied to a new primary database and the old database keeps the data schemas.
Merge is the reverse: the primary schemas are copied into the data database.

One move, whichever the direction:

1. the source's primary tree is current; the target is another database, not recorded for the
   data engine (split), and holds no rows of its own in the primary schemas;
2. the target's primary tree is brought to head (this is what stamps its version), and a marker
   row on it says a copy from this source is under way;
3. in one transaction on each side: the source's tables are locked against writes (reads go
   on), copied table by table with binary COPY, sequences set, row counts and a checksum of
   every table compared on both sides; the target commits, then the source's tables are made
   read-only for good by a trigger, and the source stops being recorded as the primary;
4. with `drop_old`, the source's copies are dropped.

Every step can be run again: a target holding a marked (unfinished) copy from the same source,
or a read-only copy left by an earlier move, is reset and copied anew; a move already done
copies nothing (the target has been live since) and, when asked, drops the old copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, inspect, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.database_url import DatabaseTarget
from app.db import migrations
from app.db.base import metadata_of
from app.db.engines import database_identity
from app.db.schemas import DATA, PRIMARY, schemas_of
from app.db.table_copy import (
    TableReport,
    compare,
    copy_table,
    set_sequences,
    stable_output,
)
from app.errors import ConfigError

MOVES_TABLE = f"{migrations.VERSION_SCHEMA}.backoffice_moves"
GUARD_FUNCTION = f"{migrations.VERSION_SCHEMA}.backoffice_moved_guard"
GUARD_TRIGGER = "backoffice_moved"
LOCK_TIMEOUT = "15s"


class MoveRefused(ConfigError):
    """The move would lose or mix data; nothing was changed."""


@dataclass
class MoveReport:
    direction: str  # "split" or "merge"
    source: str  # masked URLs
    target: str
    tables: list[TableReport] = field(default_factory=list)
    copied: bool = False  # False: an earlier run had copied and verified
    dropped_old: bool = False

    @property
    def rows(self) -> int:
        return sum(table.rows for table in self.tables)

    def as_dict(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "source": self.source,
            "target": self.target,
            "copied": self.copied,
            "dropped_old": self.dropped_old,
            "rows": self.rows,
            "tables": [table.__dict__ for table in self.tables],
        }


def target_engine(target: DatabaseTarget) -> Engine:
    """An engine for a URL given on the command line: no pool, no prepared statements (it
    may be a PgBouncer)."""
    return create_engine(
        target.url,
        poolclass=NullPool,
        connect_args={"prepare_threshold": None, "application_name": "backoffice-move"},
        hide_parameters=True,  # as the app's engines: no row values in an error's message
    )


def moved_tables() -> list[Table]:
    """The primary engine's tables, parents before children."""
    return list(metadata_of(PRIMARY).sorted_tables)


def move(
    source: Engine,
    target: Engine,
    *,
    direction: str,
    drop_old: bool,
    source_name: str,
    target_name: str,
) -> MoveReport:
    report = MoveReport(direction, source_name, target_name)
    with source.connect() as src, target.connect() as dst:
        source_id, target_id = database_identity(src), database_identity(dst)
        src.rollback()
        dst.rollback()
        if source_id == target_id:
            raise MoveRefused(f"the target is the source database ({target_id.database!r})")
        source_key, target_key = _database_key(src), _database_key(dst)
        moved = _moved_to(src)
        if (
            moved
            and target_key is not None
            and moved[0] == target_key
            and _copied_from(dst) == source_key
        ):
            # Done before: verified then, and the target has been live since.
            report.dropped_old = moved[1] == "dropped"
        else:
            source_key = _check_source(src, target_key)
            target_key = _prepare_target(dst, source_key, split=direction == "split")
            report.tables = _copy(src, dst, source_key, target_key, target_name)
            report.copied = True
        if drop_old and not report.dropped_old:
            _drop_old(src)
            report.dropped_old = True
    return report


# -- state of each side -----------------------------------------------------------------


def _database_key(conn: Connection, *, create: bool = False) -> str | None:
    """A database's own lasting name for the markers (server identities can change with a
    restart on managed servers); made the first time the database takes part in a move."""
    if create:
        _ensure_moves_table(conn)
        conn.execute(
            text(
                f"INSERT INTO {MOVES_TABLE} (side, peer, state) "
                "VALUES ('self', gen_random_uuid()::text, 'id') ON CONFLICT (side) DO NOTHING"
            )
        )
    marker = _marker(conn, "self")
    if not create:
        conn.rollback()
    return marker[0] if marker else None


def _ensure_moves_table(conn: Connection) -> None:
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {MOVES_TABLE} (side text PRIMARY KEY, "
            "peer text NOT NULL, state text NOT NULL, at timestamptz NOT NULL DEFAULT now())"
        )
    )


def _marker(conn: Connection, side: str) -> tuple[str, str] | None:
    if not inspect(conn).has_table("backoffice_moves", schema=migrations.VERSION_SCHEMA):
        return None
    row = conn.execute(
        text(f"SELECT peer, state FROM {MOVES_TABLE} WHERE side = :side"), {"side": side}
    ).one_or_none()
    return (row[0], row[1]) if row else None


def _set_marker(conn: Connection, side: str, peer: str, state: str) -> None:
    _ensure_moves_table(conn)
    conn.execute(
        text(
            f"INSERT INTO {MOVES_TABLE} (side, peer, state) VALUES (:side, :peer, :state) "
            "ON CONFLICT (side) DO UPDATE SET peer = :peer, state = :state, at = now()"
        ),
        {"side": side, "peer": peer, "state": state},
    )


def _moved_to(src: Connection) -> tuple[str, str] | None:
    """Where the source's primary schemas were moved to, if they were, and whether the old
    copies are still there ("moved") or gone ("dropped")."""
    marker = _marker(src, "source")
    src.rollback()
    return marker if marker and marker[1] in ("moved", "dropped") else None


def _copied_from(dst: Connection) -> str | None:
    marker = _marker(dst, "target")
    dst.rollback()
    return marker[0] if marker and marker[1] == "copied" else None


def _existing(conn: Connection) -> list[Table]:
    names = set()
    for schema in schemas_of(PRIMARY):
        names |= {f"{schema}.{name}" for name in inspect(conn).get_table_names(schema=schema)}
    return [table for table in moved_tables() if table.fullname in names]


def _has_guard(conn: Connection) -> bool:
    return bool(
        conn.execute(
            text("SELECT count(*) FROM pg_trigger WHERE tgname = :name"), {"name": GUARD_TRIGGER}
        ).scalar()
    )


def _check_source(src: Connection, target_key: str | None) -> str:
    """Refuse a source that is behind or was moved elsewhere; returns its key."""
    with src.begin():
        moved = _marker(src, "source")
        if moved and moved[1] in ("moved", "dropped") and moved[0] != target_key:
            raise MoveRefused(
                f"the source's primary schemas were already moved to another database "
                f"({moved[0]}); point the app there"
            )
        status = migrations.tree_status(src, PRIMARY)
        if not status.is_current:
            raise MoveRefused(
                f"the source's primary tree is {status.state} (at "
                f"{', '.join(status.current) or 'nothing'}): run `backoffice db upgrade` first"
            )
        return _database_key(src, create=True)


def _prepare_target(dst: Connection, source_key: str, *, split: bool) -> str:
    """Refuse a target holding data of its own; reset one holding an earlier, unfinished
    copy; bring its primary tree to head; mark the copy as under way. Returns its key."""
    with dst.begin():
        if split and DATA in migrations.recorded_roles(dst):
            raise MoveRefused(
                "the target database serves the data engine: give a new, empty database for "
                "the primary schemas"
            )
        ours = _marker(dst, "target")
        resettable = (ours and ours[0] == source_key) or _has_guard(dst)
        if resettable:
            _drop_primary_schemas(dst)
        else:
            busy = [
                f"{table.fullname} ({rows} rows)"
                for table in _existing(dst)
                if (rows := dst.execute(text(f"SELECT count(*) FROM {table.fullname}")).scalar())
            ]
            if busy:
                raise MoveRefused(
                    "the target database is not empty: " + ", ".join(busy) + "; give an empty "
                    "database (nothing was changed)"
                )
    with dst.begin():
        migrations.upgrade_connection(dst, PRIMARY, split=split)
        if not split:
            # The data database of a running split deployment: recorded as the primary too
            # only when the copy commits, so that a merge that stops leaves it as it was.
            _forget_primary(dst)
    with dst.begin():
        _set_marker(dst, "target", source_key, "copying")
        return _database_key(dst, create=True)


# -- copy ------------------------------------------------------------------------------


def _close_to_writers(src: Connection) -> None:
    """The source's primary tables, closed to writers (readers go on) until commit."""
    src.execute(text("SELECT set_config('lock_timeout', :t, true)"), {"t": LOCK_TIMEOUT})
    names = ", ".join(table.fullname for table in moved_tables())
    try:
        src.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))
    except DBAPIError as exc:
        raise MoveRefused(
            f"could not close the source's primary tables to writers within {LOCK_TIMEOUT}: "
            "stop the web and worker processes (or wait for long transactions), then run "
            "this again"
        ) from exc


def _copy(
    src: Connection, dst: Connection, source_key: str, target_key: str, target_name: str
) -> list[TableReport]:
    with src.begin():
        _close_to_writers(src)
        stable_output(src)
        with dst.begin():
            stable_output(dst)
            for table in moved_tables():
                copy_table(src, dst, table)
                set_sequences(dst, table)
            reports, mismatched = compare(src, dst, moved_tables())
            if mismatched:
                raise MoveRefused("the copy differs from the source:\n  " + "\n  ".join(mismatched))
            _set_marker(dst, "target", source_key, "copied")
            migrations.record_role(dst, PRIMARY, split=False)
            _forget(dst, "source")  # it holds the primary schemas now, whatever it held before
        _close_source(src, target_key, target_name)
    return reports


def _forget(conn: Connection, side: str) -> None:
    _ensure_moves_table(conn)
    conn.execute(text(f"DELETE FROM {MOVES_TABLE} WHERE side = :side"), {"side": side})


def _close_source(src: Connection, target_key: str, target_name: str) -> None:
    """Make the source's copies read-only for good, and stop calling it the primary."""
    src.execute(
        text(
            f"CREATE OR REPLACE FUNCTION {GUARD_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION USING ERRCODE = 'read_only_sql_transaction', MESSAGE = "
            "format('%s.%s moved to %s (backoffice db split/merge): this copy is "
            "read-only; point the app at the new layout', TG_TABLE_SCHEMA, TG_TABLE_NAME, "
            "TG_ARGV[0]); END $$"
        )
    )
    where = target_name.replace("'", "''")  # a trigger's argument is a literal
    for table in moved_tables():
        src.execute(
            text(
                f"CREATE TRIGGER {GUARD_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table.fullname} FOR EACH STATEMENT EXECUTE FUNCTION {GUARD_FUNCTION}"
                f"('{where}')"
            )
        )
    _set_marker(src, "source", target_key, "moved")
    _forget(src, "target")
    _forget_primary(src)


def _forget_primary(conn: Connection) -> None:
    """The database no longer records that it serves the primary engine."""
    conn.execute(
        text(f"DELETE FROM {migrations.VERSION_SCHEMA}.{migrations.ROLE_TABLE} WHERE engine = :r"),
        {"r": PRIMARY},
    )


def _drop_primary_schemas(conn: Connection) -> None:
    """The primary schemas and the primary tree's version table, gone."""
    for schema in schemas_of(PRIMARY):
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    conn.execute(
        text(
            f"DROP TABLE IF EXISTS {migrations.VERSION_SCHEMA}.{migrations.VERSION_TABLES[PRIMARY]}"
        )
    )


def _drop_old(src: Connection) -> None:
    with src.begin():
        _drop_primary_schemas(src)
        src.execute(text(f"DROP FUNCTION IF EXISTS {GUARD_FUNCTION}()"))
        marker = _marker(src, "source")
        _set_marker(src, "source", marker[0], "dropped")
