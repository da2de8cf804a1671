"""Engine creation: one Engine in single mode, two in split mode."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import weakref
from collections.abc import Iterator
from contextvars import ContextVar, Token
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import QueuePool

from app.config import PoolSettings, Settings
from app.database_url import DatabaseTarget
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

# The execution option that sets a connection's statement timeout, in seconds (0: none). Bulk
# jobs set theirs (JOB_STATEMENT_TIMEOUT) on their connections; without it, a statement of a
# web request gets its engine's limit, and any other work (migrations, moves, backups, CLI
# commands) the server's own setting.
STATEMENT_TIMEOUT = "statement_timeout"

# Set while the web app handles a request (app/__init__.py), so that only requests get the
# web limits even in a process that also runs commands, as tests and `flask --app app` do.
_in_web_request: ContextVar[bool] = ContextVar("in_web_request", default=False)


def web_request_started() -> Token[bool]:
    return _in_web_request.set(True)


def web_request_ended(token: Token[bool]) -> None:
    _in_web_request.reset(token)


# TCP keepalives on every connection unless its URL sets its own: an idle pooled connection
# through a NAT, a load balancer or a managed database's proxy (which drop connections silent
# for a few minutes) stays open, and a peer that vanished is found within about two minutes
# instead of the operating system's two hours.
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 60,
    "keepalives_interval": 10,
    "keepalives_count": 6,
}


class NamedQueuePool(QueuePool):
    """A QueuePool whose "limit reached" error names its engine (`engine_role`, None for the
    one engine of single mode), as `handle_error` names it on a failed statement."""

    engine_role: EngineRole | None = None

    def connect(self):  # type: ignore[override]
        try:
            return super().connect()
        except PoolTimeout as exc:
            exc.engine_role = self.engine_role  # type: ignore[attr-defined]
            raise

    def recreate(self) -> QueuePool:
        pool = super().recreate()
        pool.engine_role = self.engine_role  # type: ignore[attr-defined]
        return pool


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
        limits = (settings.primary_statement_timeout, settings.data_statement_timeout)
        self.primary = _make_engine(
            settings,
            settings.primary,
            settings.primary_pool,
            PRIMARY if self.split else "main",
            # One database for both roles: the longer limit, so that no request that works in
            # split mode is cut in single mode (0 is no limit).
            limits[0] if self.split else (0 if 0 in limits else max(limits)),
        )
        self.data = (
            _make_engine(settings, self.targets[DATA], settings.data_pool, DATA, limits[1])
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
    settings: Settings, target: DatabaseTarget, pool: PoolSettings, name: str, web_limit: float
) -> Engine:
    pool = pool.capped(target.connection_limit)
    connect_args: dict = {
        "connect_timeout": settings.connect_timeout,
        "application_name": f"backoffice-{name}",
    }
    connect_args.update({k: v for k, v in KEEPALIVES.items() if k not in target.url.query})
    if target.pgbouncer:
        # PgBouncer in transaction mode hands each transaction to any server connection:
        # a statement prepared on one is unknown on the next.
        connect_args["prepare_threshold"] = None
    engine = create_engine(
        target.url,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=settings.pool_timeout,
        poolclass=NamedQueuePool,
        # A connection the server or a proxy closed while idle is found and replaced at
        # checkout; one older than the recycle age is replaced before use (a managed server's
        # failover, a PgBouncer restart); the most recently used is handed out first, so the
        # spare ones stay idle and are the ones closed and replaced.
        pool_pre_ping=True,
        pool_recycle=pool.recycle,
        pool_use_lifo=True,
        connect_args=connect_args,
        logging_name=name,
        # Statement parameters are password and token hashes, emails, customers' values: never
        # in the SQL log (LOG_DB_QUERIES) nor in an exception's message.
        hide_parameters=True,
    )
    _live_engines.add(engine)
    role = name if name in (PRIMARY, DATA) else None  # single mode: one database for both
    engine.pool.engine_role = role  # type: ignore[attr-defined]

    @event.listens_for(engine, "handle_error")
    def _name_the_engine(context) -> None:
        # Which engine failed, for the HTTP answer (`data_engine_unavailable`): the
        # exception itself is left as it is for the code that handles it.
        context.sqlalchemy_exception.engine_role = role

    @event.listens_for(engine, "begin")
    def _limit_statements(conn: Connection) -> None:
        seconds = conn.get_execution_options().get(STATEMENT_TIMEOUT)
        if seconds is None and _in_web_request.get():
            seconds = web_limit
        dbapi_connection = conn.connection.dbapi_connection
        if seconds is None or dbapi_connection is None or dbapi_connection.autocommit:
            return  # autocommit: single short statements (claims, heartbeats), unlimited
        # SET LOCAL, on the driver (before SQLAlchemy's own statements and events): it ends
        # with this transaction, which is all PgBouncer's transaction mode keeps on one server
        # connection. A session-wide SET would stay on a server connection another client gets
        # next, and startup `options` are refused or ignored by PgBouncer.
        milliseconds = max(1, round(seconds * 1000)) if seconds else 0
        dbapi_connection.execute(f"SET LOCAL statement_timeout = {milliseconds}")

    return engine


def ping(engines: Engines, role: EngineRole) -> float:
    """Round-trip time of `SELECT 1` in milliseconds."""
    with engines.connect(role) as conn:
        started = time.perf_counter()
        conn.execute(text("SELECT 1"))
        return (time.perf_counter() - started) * 1000
