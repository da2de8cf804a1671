"""A guard against work that spans both engines (on in development and tests).

In single mode the two engines are one database, so a transaction that writes to both, or a
query that joins tables of both, works there and breaks in split mode. The guard makes it fail
everywhere: a unit of work (the flushes and ORM statements between two commits) that writes
tables of both engines raises `CrossEngineWrite`, and a statement whose tables belong to both
engines raises `CrossEngineQuery`, naming the tables. Raw `text()` SQL is not inspected.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain

from sqlalchemy import Engine, Table, event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction, object_mapper, sessionmaker
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.util import find_tables

from app.db.schemas import SCHEMA_ENGINE


class CrossEngineWrite(RuntimeError):
    """One unit of work wrote to both engines; no transaction can span them."""


class CrossEngineQuery(RuntimeError):
    """One statement used tables of both engines; no join can span them."""


def _by_engine(tables: Iterable[Table]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for table in tables:
        role = SCHEMA_ENGINE.get(table.schema or "")
        if role is not None:
            found.setdefault(role, set()).add(table.fullname)
    return found


def _describe(found: dict[str, set[str]]) -> str:
    return " and ".join(
        f"{role} ({', '.join(sorted(names))})" for role, names in sorted(found.items())
    )


def _record_writes(session: Session, tables: Iterable[Table]) -> None:
    written: dict[str, set[str]] = session.info.setdefault("engine_writes", {})
    for role, names in _by_engine(tables).items():
        written.setdefault(role, set()).update(names)
    if len(written) > 1:
        description = _describe(written)
        written.clear()
        raise CrossEngineWrite(
            f"one unit of work writes to both engines: {description}; commit each engine's "
            "work on its own (no transaction spans the two databases)"
        )


def _before_flush(session: Session, flush_context: UOWTransaction, instances) -> None:
    objects = chain(
        session.new, session.deleted, (o for o in session.dirty if session.is_modified(o))
    )
    _record_writes(session, (object_mapper(o).local_table for o in objects))


def _orm_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if isinstance(table, Table):
            _record_writes(state.session, [table])


def _forget_writes(session: Session, *_args) -> None:
    session.info.pop("engine_writes", None)


def _before_execute(conn, clauseelement, multiparams, params, execution_options):
    if not isinstance(clauseelement, ClauseElement):
        return
    tables = find_tables(
        clauseelement,
        check_columns=True,
        include_aliases=True,
        include_joins=True,
        include_selects=True,
        include_crud=True,
    )
    found = _by_engine(t for t in tables if isinstance(t, Table))
    if len(found) > 1:
        raise CrossEngineQuery(
            f"one statement uses tables of both engines: {_describe(found)}; query each "
            "engine on its own and combine the results in code"
        )


def guard_sessions(factory: sessionmaker) -> None:
    event.listen(factory, "before_flush", _before_flush)
    event.listen(factory, "do_orm_execute", _orm_execute)
    event.listen(factory, "after_commit", _forget_writes)
    event.listen(factory, "after_rollback", _forget_writes)


def guard_engine(engine: Engine) -> None:
    if not event.contains(engine, "before_execute", _before_execute):
        event.listen(engine, "before_execute", _before_execute)
