"""Sessions routed by declarative base: one Session spans both engines.

Services take a `BackofficeSession` and never commit; the caller owns the transaction: the
request (through `db_session()`), or a job or CLI command (through `session_scope()`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from flask import current_app, g
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import BASES
from app.db.schemas import EngineRole

Bind = Engine | Connection


class BackofficeSession(Session):
    """A Session whose mapped classes go to their base's engine, with raw SQL by role."""

    def connection_for(self, role: EngineRole) -> Connection:
        """The connection this session uses for one engine, for raw and set-based SQL."""
        return self.connection(bind_arguments={"bind": self.info["binds"][role]})


def make_session_factory(
    binds: Mapping[EngineRole, Bind], **kwargs
) -> sessionmaker[BackofficeSession]:
    return sessionmaker(
        class_=BackofficeSession,
        binds={BASES[role]: bind for role, bind in binds.items()},
        info={"binds": dict(binds)},
        expire_on_commit=False,
        **kwargs,
    )


def db_session() -> BackofficeSession:
    """The request's session, made on first use and closed when the app context ends."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["backoffice"].session_factory()
    return g.db_session


def close_db_session(_exc: BaseException | None = None) -> None:
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
