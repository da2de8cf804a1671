"""Engine creation: one Engine in single mode, two in split mode."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError

from app.config import DatabaseTarget, PoolSettings, Settings
from app.db.schemas import DATA, ENGINE_ROLES, PRIMARY, EngineRole
from app.errors import ConfigError, DatabaseUnavailable, first_line

log = logging.getLogger(__name__)

# Every engine this process made. After a fork (gunicorn with --preload) the child must not
# share the parent's sockets: it drops the inherited pool without closing the parent's
# connections, as SQLAlchemy's pooling guide prescribes.
_live_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for engine in list(_live_engines):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass(frozen=True)
class DatabaseIdentity:
    system_identifier: str
    database: str


class Engines:
    """The engines of one process, looked up by role. `primary is data` in single mode."""

    def __init__(self, settings: Settings) -> None:
        if settings.primary is None:
            raise ConfigError("no database URL is configured and the embedded one is not started")
        self.settings = settings
        self.split = settings.split_mode
        if settings.log_db_queries:
            log_sql_statements()
        self.targets: dict[EngineRole, DatabaseTarget] = {
            PRIMARY: settings.primary,
            DATA: settings.data if self.split and settings.data else settings.primary,
        }
        self.primary = _make_engine(
            settings, settings.primary, settings.primary_pool, PRIMARY if self.split else "main"
        )
        self.data = (
            _make_engine(settings, self.targets[DATA], settings.data_pool, DATA)
            if self.split
            else self.primary
        )

    def __getitem__(self, role: EngineRole) -> Engine:
        return self.primary if role == PRIMARY else self.data

    def items(self) -> Iterator[tuple[EngineRole, Engine]]:
        for role in ENGINE_ROLES:
            yield role, self[role]

    def masked_url(self, role: EngineRole) -> str:
        return self.targets[role].masked

    @contextlib.contextmanager
    def connect(self, role: EngineRole) -> Iterator[Connection]:
        """A connection to one engine; an unreachable server becomes `DatabaseUnavailable`."""
        try:
            conn = self[role].connect()
        except OperationalError as exc:
            raise DatabaseUnavailable(role, self.masked_url(role), first_line(exc)) from None
        with conn:
            yield conn

    @contextlib.contextmanager
    def begin(self, role: EngineRole) -> Iterator[Connection]:
        with self.connect(role) as conn, conn.begin():
            yield conn

    def identity(self, role: EngineRole) -> DatabaseIdentity:
        with self.connect(role) as conn:
            return database_identity(conn)

    def verify_layout(self) -> None:
        """Split mode: refuse two URLs that reach one database under different names."""
        if not self.split:
            return
        try:
            primary, data = self.identity(PRIMARY), self.identity(DATA)
        except DatabaseUnavailable as exc:
            # Start anyway: readiness reports the engine down, and it may come back.
            log.warning("layout not verified: %s", exc)
            return
        if primary == data:
            raise ConfigError(
                "SPLIT_DB_MODE=true but PRIMARY_DATABASE_URL and DATA_DATABASE_URL reach the "
                f"same database ({primary.database!r} on server {primary.system_identifier}); "
                "give two databases, or set SPLIT_DB_MODE=false"
            )

    def dispose(self) -> None:
        self.primary.dispose()
        if self.data is not self.primary:
            self.data.dispose()


def database_identity(conn: Connection) -> DatabaseIdentity:
    """What makes a database itself: its server's system identifier and its name."""
    try:
        with conn.begin_nested():
            row = conn.execute(
                text("SELECT system_identifier::text, current_database() FROM pg_control_system()")
            ).one()
    except DBAPIError:
        # pg_control_system() may be revoked on managed servers: fall back to the address
        # and start time, which also tell two servers apart.
        row = conn.execute(
            text(
                "SELECT coalesce(host(inet_server_addr()), 'local') || ':' || "
                "coalesce(inet_server_port(), 0) || '@' || pg_postmaster_start_time(), "
                "current_database()"
            )
        ).one()
    return DatabaseIdentity(system_identifier=row[0], database=row[1])


def log_sql_statements() -> None:
    """LOG_DB_QUERIES: every statement SQLAlchemy sends, without its parameters, on stderr
    (never stdout, where `--json` commands print their one object). Bulk jobs run their COPY
    and set-based statements on the driver's cursor, so a million rows never make a million
    lines."""
    logger = logging.getLogger("sqlalchemy.engine")
    logger.setLevel(logging.INFO)
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        logger.addHandler(handler)


def _make_engine(
    settings: Settings, target: DatabaseTarget, pool: PoolSettings, name: str
) -> Engine:
    pool = pool.capped(target.connection_limit)
    connect_args: dict = {
        "connect_timeout": settings.connect_timeout,
        "application_name": f"backoffice-{name}",
    }
    if target.pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection:
        # a statement prepared on one is unknown on the next.
        connect_args["prepare_threshold"] = None
    engine = create_engine(
        target.url,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=True,
        connect_args=connect_args,
        logging_name=name,
        # Statement parameters are password and token hashes, emails, customers' values: never
        # in the SQL log (LOG_DB_QUERIES) nor in an exception's message.
        hide_parameters=True,
    )
    _live_engines.add(engine)
    role = name if name in (PRIMARY, DATA) else None  # single mode: one database for both

    @event.listens_for(engine, "handle_error")
    def _name_the_engine(context) -> None:
        # Which engine failed, for the HTTP answer (`data_engine_unavailable`): the
        # exception itself is left as it is for the code that handles it.
        context.sqlalchemy_exception.engine_role = role

    return engine


def ping(engines: Engines, role: EngineRole) -> float:
    """Round-trip time of `SELECT 1` in milliseconds."""
    with engines.connect(role) as conn:
        started = time.perf_counter()
        conn.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000
