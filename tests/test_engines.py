"""Engines in both layouts: one shared Engine in single mode, two refused if one database."""

import json
import logging
import os
import subprocess

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import create_app
from app.config import Settings
from app.db.base import DataBase, PrimaryBase
from app.db.engines import Engines
from app.errors import ConfigError, DatabaseUnavailable
from tests.harness import backoffice


def test_single_mode_hands_both_roles_the_same_engine(app, split):
    engines = app.extensions["backoffice"].engines
    if split:
        assert engines.primary is not engines.data
        assert engines.identity("primary") != engines.identity("data")
    else:
        assert engines.primary is engines.data
        assert engines["data"] is engines["primary"]


def test_session_routes_each_base_to_its_engine(app, db):
    engines = app.extensions["backoffice"].engines
    for base, engine in ((PrimaryBase, engines.primary), (DataBase, engines.data)):
        for mapper in base.registry.mappers:
            assert db.get_bind(mapper).engine is engine, mapper.class_
    primary_db = db.connection_for("primary").execute(text("SELECT current_database()")).scalar()
    data_db = db.connection_for("data").execute(text("SELECT current_database()")).scalar()
    assert (primary_db == data_db) is (engines.primary is engines.data)


def test_split_mode_refuses_two_urls_that_reach_one_database(make_env):
    env = make_env("same")
    env["SPLIT_DB_MODE"] = "true"
    # A host alias with hostaddr passes the URL comparison; the server identity check does not.
    url = make_url(env["PRIMARY_DATABASE_URL"])
    alias = url.set(host="primary-alias", query={"hostaddr": url.host})
    env["DATA_DATABASE_URL"] = alias.render_as_string(hide_password=False)
    with pytest.raises(ConfigError, match="reach the same database"):
        create_app(env)


def test_unreachable_database_names_the_engine_and_masks_the_url():
    settings = Settings.from_env(
        {"APP_ENV": "test", "DATABASE_URL": "postgresql://app:s3cret@127.0.0.1:9/nowhere"}
    )
    engines = Engines(settings)
    with pytest.raises(DatabaseUnavailable) as info:
        engines.identity("data")
    message = str(info.value)
    assert message.startswith("the data database (postgresql+psycopg://app:***@127.0.0.1:9/")
    assert "s3cret" not in message


def test_connection_limit_caps_the_pool_and_pgbouncer_disables_prepared_statements(make_env):
    env = make_env("bouncer")
    env["PRIMARY_DATABASE_URL"] += "?pgbouncer=true&connection_limit=2"
    application = create_app(env)
    engine = application.extensions["backoffice"].engines.primary
    try:
        assert (engine.pool.size(), engine.pool._max_overflow) == (2, 0)
        with engine.connect() as conn:
            assert conn.connection.dbapi_connection.prepare_threshold is None
    finally:
        application.extensions["backoffice"].engines.dispose()


def test_log_db_queries_logs_statements_on_stderr_not_stdout(make_env):
    """`--json` commands print one object on stdout: the SQL log must stay off it."""
    env = make_env("echo")
    assert run_cli(env, "db", "upgrade").returncode == 0
    quiet = run_cli(env, "db", "status", "--json")
    env["LOG_DB_QUERIES"] = "true"
    loud = run_cli(env, "db", "status", "--json")
    assert json.loads(loud.stdout) == json.loads(quiet.stdout), "stdout is the JSON alone"
    assert "SELECT" in loud.stderr and "SELECT" not in quiet.stderr


def test_log_db_queries_never_logs_parameter_values(committed_env, caplog):
    """A login's statements carry the password hash and the session token's hash: the SQL log
    shows the statements, never their values."""
    from app.auth.tokens import SESSION_COOKIE, token_hash
    from app.models.primary.config import User
    from tests.conftest import create_user, login

    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # restored after the test
    application = create_app({**committed_env, "LOG_DB_QUERIES": "true"})
    try:
        bo = application.extensions["backoffice"]
        user = create_user(bo.session_factory, "viewer")
        caplog.clear()
        client = application.test_client()
        login(client, user.email)
        assert client.get("/api/auth/me").status_code == 200
        with bo.session_factory() as session:
            password_hash = session.get(User, user.id).password_hash
        session_token = client.get_cookie(SESSION_COOKIE).value
    finally:
        application.extensions["backoffice"].close()
    logged = caplog.text
    assert "SELECT" in logged and "config.sessions" in logged, "statements are logged"
    assert "parameters hidden" in logged
    for secret in (password_hash, token_hash(session_token), session_token, user.email):
        assert secret not in logged


def test_a_failing_statement_is_logged_without_its_values(fresh_app, caplog):
    """The error's log line names the error and the statement; never the parameters, nor the
    server's DETAIL line, which repeats the failing row."""
    from app.auth.access import PUBLIC, allow

    secret = "argon2-hash-that-must-not-be-logged"

    @fresh_app.get("/api/test/failing-statement")
    @allow(PUBLIC)
    def failing_statement():
        with fresh_app.extensions["backoffice"].engines.begin("primary") as conn:
            conn.execute(text("CREATE TEMP TABLE t (secret text, b text NOT NULL)"))
            conn.execute(text("INSERT INTO t VALUES (:secret, NULL)"), {"secret": secret})
        return "unreachable"

    caplog.set_level(logging.INFO)
    response = fresh_app.test_client().get("/api/test/failing-statement")
    assert response.status_code == 500
    assert response.json["error"]["code"] == "internal_error"
    assert "violates not-null constraint" in caplog.text
    assert "INSERT INTO t VALUES" in caplog.text, "the statement, to find the bug"
    assert secret not in caplog.text


def test_production_warns_at_start_about_database_urls_without_sslmode(committed_env, caplog):
    env = {**committed_env, "APP_ENV": "production", "SECRET_KEY": "s" * 32}
    caplog.set_level(logging.WARNING, logger="app")
    create_app(env).extensions["backoffice"].close()
    warned = [r.getMessage() for r in caplog.records if "sslmode" in r.getMessage()]
    variables = (
        ["PRIMARY_DATABASE_URL", "DATA_DATABASE_URL"]
        if "DATA_DATABASE_URL" in env
        else ["PRIMARY_DATABASE_URL"]
    )
    assert [w.split(" ")[0] for w in warned] == variables

    caplog.clear()
    for name in variables:
        env[name] += "?sslmode=disable"  # a local server: said on purpose
    create_app(env).extensions["backoffice"].close()
    assert not [r for r in caplog.records if "sslmode" in r.getMessage()]


def test_doctor_masks_a_password_given_as_a_url_parameter(make_env):
    env = make_env("doctor")
    # The server's password moves from the URL's user part to a parameter.
    url = make_url(env["PRIMARY_DATABASE_URL"])
    password = url.password or "hunter2"
    env["PRIMARY_DATABASE_URL"] = (
        url.set(password=None).render_as_string(hide_password=False)
        + f"?password={password}&sslpassword=hunter3"
    )
    assert run_cli(env, "db", "upgrade").returncode == 0
    for args in (("doctor",), ("doctor", "--json")):
        result = run_cli(env, *args)
        assert result.returncode == 0, result.stderr
        assert password not in result.stdout + result.stderr
        assert "hunter3" not in result.stdout + result.stderr
        assert "password=***" in result.stdout and "sslpassword=***" in result.stdout


def test_a_forked_worker_gets_its_own_connections(app):
    """gunicorn --preload forks after the parent connected: the child must not share sockets."""
    engine = app.extensions["backoffice"].engines.primary
    with engine.connect() as conn:
        parent_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        try:
            with engine.connect() as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
            os.write(write, str(pid).encode())
        finally:
            os._exit(0)
    os.close(write)
    child_pid = int(os.read(read, 100) or 0)
    os.waitpid(child, 0)
    assert child_pid and child_pid != parent_pid
    with engine.connect() as conn:  # the parent's pooled connection still works
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() == parent_pid


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return backoffice(env, *args, timeout=120)
