"""Sessions routed by declarative base: one Session spans both engines.

Services take a `BackofficeSession` and never commit; the caller owns the transaction: the
request (through `db_session()`), or a job or CLI command (through `session_scope()`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.util import find_tables

from app.db.base import BASES
from app.db.guard import guard_sessions
from app.db.schemas import SCHEMA_ENGINE, EngineRole
from app.errors import NotFound

Bind = Engine | Connection


T = TypeVar("T")


class BackofficeSession(Session):
    """A Session whose mapped classes go to their base's engine, with raw SQL by role."""

    def connection_for(self, role: EngineRole) -> Connection:
        """The connection this session uses for one engine, for raw and set-based SQL."""
        return self.connection(bind_arguments={"bind": self.info["binds"][role]})

    def get_or_404(self, model: type[T], ident: int, noun: str) -> T:
        """The row with this id, or a 404 naming it (ids beyond bigint's range included)."""
        row = self.get(model, ident) if 0 < ident < 2**63 else None
        if row is None:
            raise NotFound(f"no {noun} with id {ident}")
        return row

    def get_bind(self, mapper=None, *, clause=None, **kwargs):
        """Core statements on tables (not mapped classes) go by their tables' schemas."""
        if mapper is None and clause is not None:
            for table in find_tables(
                clause, include_crud=True, include_joins=True, include_aliases=True
            ):
                role = SCHEMA_ENGINE.get(getattr(table, "schema", None) or "")
                if role is not None:
                    return self.info["binds"][role]
        return super().get_bind(mapper, clause=clause, **kwargs)


def make_session_factory(
    binds: Mapping[EngineRole, Bind], *, guard: bool = False, **kwargs
) -> sessionmaker[BackofficeSession]:
    """`guard`: refuse a unit of work that writes to both engines (app/db/guard.py)."""
    factory = sessionmaker(
        class_=BackofficeSession,
        binds={BASES[role]: bind for role, bind in binds.items()},
        info={"binds": dict(binds)},
        expire_on_commit=False,
        **kwargs,
    )
    if guard:
        guard_sessions(factory)
    return factory


def db_session() -> BackofficeSession:
    """The request's session, made on first use and closed when the app context ends."""
    # Flask here: the CLI and the workers import this module too. (`app.backoffice`'s accessor
    # is above this package, which imports nothing built on it.)
    from flask import current_app, g

    if "db_session" not in g:
        g.db_session = current_app.extensions["backoffice"].session_factory()
    return g.db_session


def close_db_session(_exc: BaseException | None = None) -> None:
    from flask import g

    session = g.pop("db_session", None)
    if session is not None:
        session.close()  # rolls back whatever the request did not commit


@contextlib.contextmanager
def session_scope(factory: sessionmaker[BackofficeSession]) -> Iterator[BackofficeSession]:
    """A unit of work for jobs and CLI code: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
