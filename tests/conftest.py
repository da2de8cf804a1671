"""Test fixtures: real PostgreSQL servers, in single or split mode.

`--db-mode single|split` (or TEST_DB_MODE) picks the layout for the whole run. Servers are
embedded ones started under a temporary folder, unless URLs are given:
TEST_DATABASE_URL (single), or TEST_PRIMARY_DATABASE_URL and TEST_DATA_DATABASE_URL (split),
each naming a database on a server where that user may CREATE DATABASE. Every test database
is created fresh for the run (or for one test) and dropped afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from flask import Flask
from psycopg import sql
from sqlalchemy import BigInteger, Column, Table, Text, event, text
from sqlalchemy.engine import make_url

from app import create_app
from app.db import migrations
from app.db.base import DataBase
from app.db.embedded import EmbeddedPostgres
from app.db.schemas import DATA, PRIMARY, EngineRole
from app.db.session import make_session_factory


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db-mode",
        choices=["single", "split"],
        default=os.environ.get("TEST_DB_MODE", "single"),
        help="run the suite against one database (single) or two servers (split)",
    )


def pytest_report_header(config: pytest.Config) -> str:
    return f"database mode: {config.getoption('--db-mode')}"


@dataclass
class PgServer:
    """A server the tests may create databases on."""

    url: str  # SQLAlchemy URL of some database on it
    embedded: EmbeddedPostgres | None = None

    def _admin(self) -> psycopg.Connection:
        url = make_url(self.url).set(drivername="postgresql")
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)

    def database_url(self, name: str) -> str:
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def create_database(self, prefix: str) -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def start_embedded_server(folder: Path, database: str = "postgres") -> PgServer:
    server = EmbeddedPostgres(folder, database, fast=True)
    return PgServer(url=server.start(), embedded=server)


@pytest.fixture(scope="session")
def db_mode(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--db-mode")


@pytest.fixture(scope="session")
def split(db_mode: str) -> bool:
    return db_mode == "split"


@pytest.fixture(scope="session")
def pg_servers(split: bool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """One server in single mode; two separate servers in split mode."""
    env_urls = (
        {
            PRIMARY: os.environ.get("TEST_PRIMARY_DATABASE_URL"),
            DATA: os.environ.get("TEST_DATA_DATABASE_URL"),
        }
        if split
        else {PRIMARY: os.environ.get("TEST_DATABASE_URL")}
    )
    if all(env_urls.values()):
        yield {role: PgServer(url=url) for role, url in env_urls.items()}
        return
    root = tmp_path_factory.mktemp("servers")
    servers = {role: start_embedded_server(root / role) for role in env_urls}
    yield servers
    for server in servers.values():
        server.embedded.stop()


METRICS_TOKEN = "test-metrics-token-long-enough-for-production"
# What a scraper sends to read /metrics and the details of /health/ready.
READY_DETAILS = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(scope="session")
def make_env(
    pg_servers: dict[EngineRole, PgServer], split: bool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], dict[str, str]]]:
    """Fresh, empty databases in the run's layout, as the environment the app reads."""
    created: list[tuple[PgServer, str]] = []

    def make(prefix: str = "test") -> dict[str, str]:
        env = {
            "APP_ENV": "test",
            "SPLIT_DB_MODE": "true" if split else "false",
            "INSTANCE_PATH": str(tmp_path_factory.mktemp("instance")),
            "SECRET_KEY": "test-secret-key",
            "METRICS_TOKEN": METRICS_TOKEN,
        }
        for role, server in pg_servers.items():
            name = server.create_database(f"{prefix}_{role}")
            created.append((server, name))
            env[f"{role.upper()}_DATABASE_URL"] = server.database_url(name)
        return env

    yield make
    for server, name in created:
        server.drop_database(name)


def _dispose(app: Flask) -> None:
    app.extensions["backoffice"].close()


@pytest.fixture(scope="session")
def app(make_env: Callable[[str], dict[str, str]]) -> Iterator[Flask]:
    """The application on databases migrated to head once for the whole run."""
    env = make_env("suite")
    # Tests on this app run inside transactions that are rolled back, so the NOTIFY that ends
    # cached sessions is never delivered: the cache is off here, and tests of the cache use
    # `committed_env`, whose changes commit.
    env["SESSION_CACHE_TTL"] = "0"
    application = create_app(env)
    migrations.upgrade(application.extensions["backoffice"].engines)
    yield application
    _dispose(application)


@pytest.fixture
def fresh_app(make_env: Callable[[str], dict[str, str]]) -> Iterator[Flask]:
    """An application on empty, unmigrated databases of its own (for migration tests)."""
    application = create_app(make_env("fresh"))
    yield application
    _dispose(application)


@pytest.fixture
def client(app: Flask, db):
    return app.test_client()


@pytest.fixture
def db(app: Flask):
    """A session whose work is rolled back at the end of the test, on both engines.

    The app's requests use it too, so what a request commits is only a savepoint.
    """
    bo = app.extensions["backoffice"]
    engines = bo.engines
    primary = engines.primary.connect()
    data = primary if engines.data is engines.primary else engines.data.connect()
    transactions = [conn.begin() for conn in {id(c): c for c in (primary, data)}.values()]
    factory = make_session_factory(
        {PRIMARY: primary, DATA: data},
        guard=bo.settings.engine_guard,
        join_transaction_mode="create_savepoint",
    )
    original, bo.session_factory = bo.session_factory, factory
    session = factory()
    try:
        yield session
    finally:
        session.close()
        bo.session_factory = original
        for transaction in transactions:
            transaction.rollback()
        for conn in {id(c): c for c in (primary, data)}.values():
            conn.close()


@pytest.fixture
def spare_servers(split: bool, tmp_path: Path) -> Iterator[dict[str, PgServer]]:
    """Servers of this test's own, in the run's layout, which the test may stop and start."""
    roles = (PRIMARY, DATA) if split else (PRIMARY,)
    servers = {role: start_embedded_server(tmp_path / role) for role in roles}
    yield servers
    for server in servers.values():
        server.embedded.stop()


def _migrated(env: dict[str, str]) -> dict[str, str]:
    application = create_app(env)
    migrations.upgrade(application.extensions["backoffice"].engines)
    _dispose(application)
    return env


@pytest.fixture(scope="module")
def committed_env(make_env) -> dict[str, str]:
    """Databases of the module's own, migrated, where what tests do is committed for real."""
    return _migrated(make_env("committed"))


@pytest.fixture
def migrated_env(make_env) -> dict[str, str]:
    """Empty databases of the test's own, migrated: for commands run as a person runs them,
    whose tests count what is there."""
    return _migrated(make_env("migrated"))


@pytest.fixture(scope="module")
def committed_app(committed_env) -> Iterator[Flask]:
    """An app on the module's committed databases: its caches on, their notices delivered."""
    application = create_app(committed_env)
    yield application
    _dispose(application)


@pytest.fixture(scope="module")
def factory(committed_app: Flask):
    """The session factory of `committed_app`."""
    return committed_app.extensions["backoffice"].session_factory


@pytest.fixture
def primary_queries(committed_app: Flask) -> Iterator[list[str]]:
    """Statements this process sends to `committed_app`'s primary engine, counted."""
    engine = committed_app.extensions["backoffice"].engines.primary
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield statements
    event.remove(engine, "before_cursor_execute", count)


@pytest.fixture
def probe_table(db):
    """Makes throwaway data-engine tables, `workspace.<name>` (an id, a column that names a
    primary-engine row, a text column), as imports and datasets refer to customers and
    users; made in the test's transaction, and taken off the data base's metadata after."""
    made: list[Table] = []

    def make(name: str, refers_to: str, text_column: str) -> Table:
        table = Table(
            name,
            DataBase.metadata,
            Column("id", BigInteger, primary_key=True),
            Column(refers_to, BigInteger),
            Column(text_column, Text),
            schema="workspace",
        )
        made.append(table)
        db.connection_for("data").execute(
            text(
                f"CREATE TABLE workspace.{name} "
                f"(id bigserial PRIMARY KEY, {refers_to} bigint, {text_column} text)"
            )
        )
        return table

    yield make
    for table in made:
        DataBase.metadata.remove(table)


PASSWORD = "correct horse battery staple"


def create_user(factory, role: str = "viewer", email: str | None = None, **kwargs):
    """A committed user (for apps on `committed_env`)."""
    from app.audit import Actor
    from app.auth.users import create_user as create
    from app.db.session import session_scope

    email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    with session_scope(factory) as session:
        return create(
            session,
            Actor(None, "tests"),
            email=email,
            display_name=role.title(),
            role=role,
            password=kwargs.pop("password", PASSWORD),
            **kwargs,
        )


def login(client, email: str, password: str = PASSWORD) -> str:
    """Log the test client in; returns the CSRF token."""
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.json
    return response.json["csrf_token"]


@pytest.fixture
def make_user(app, db):
    """Users inside the test's transaction (for the suite app)."""
    from app.audit import Actor
    from app.auth.users import create_user as create

    def make(role: str = "viewer", email: str | None = None, **kwargs):
        user = create(
            db,
            Actor(None, "tests"),
            email=email or f"{role}-{uuid.uuid4().hex[:8]}@example.com",
            display_name=role.title(),
            role=role,
            password=kwargs.pop("password", PASSWORD),
            **kwargs,
        )
        db.commit()  # a savepoint: rolled back with the test
        return user

    return make


@pytest.fixture
def as_admin(client, make_user):
    """The client logged in as a new admin; returns (admin, headers with the CSRF token)."""
    admin = make_user("admin")
    return admin, {"X-CSRF-Token": login(client, admin.email)}


def queue_import(bo, customer, content: bytes, **options) -> tuple[int, int]:
    """Receive bytes as an upload for a customer (committed); returns (import id, job id)."""
    import io

    from app.db.session import session_scope
    from app.imports import service as imports

    with session_scope(bo.session_factory) as session:
        batch = imports.receive(
            session,
            bo.references,
            customer_id=customer.id,
            created_by=None,
            file_name="data.csv",
            stream=io.BytesIO(content),
            size_limit=10**9,
            **options,
        )
        return batch.id, batch.job_id


# -- bulk work: imports, transforms, exports and their jobs ----------------------------------
# Their modules run jobs for real, so they work on committed databases (`committed_env`) with
# an app of the module's own. A module adds settings by overriding `bulk_env`. Their helpers
# are in tests/bulk.py.


@pytest.fixture(scope="module")
def bulk_env(committed_env: dict[str, str]) -> dict[str, str]:
    return committed_env


@pytest.fixture(scope="module")
def bulk_app(bulk_env: dict[str, str]) -> Iterator[Flask]:
    application = create_app(bulk_env)
    yield application
    _dispose(application)


@pytest.fixture(scope="module")
def bo(bulk_app: Flask):
    return bulk_app.extensions["backoffice"]


@pytest.fixture
def customer(bo):
    """An active customer of the test's own (committed)."""
    from app.audit import Actor
    from app.customers import service as customers
    from app.db.session import session_scope

    code = f"C{uuid.uuid4().hex[:10].upper()}"
    with session_scope(bo.session_factory) as session:
        return customers.create_customer(session, Actor(None, "tests"), code=code, name=code)
