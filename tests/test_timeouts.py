"""Statement timeouts and a full pool: a web request whose statement runs too long, or that
finds every pooled connection in use, gets a 503 naming the engine (never a 500 or a hung
worker), the app keeps serving afterwards, and bulk jobs keep limits of their own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from flask import Flask, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app import create_app
from app.auth.access import PUBLIC, allow
from app.config import Settings
from app.db.engines import Engines, web_request_ended, web_request_started
from app.db.schemas import DATA, PRIMARY
from app.db.session import db_session, session_scope
from app.errors import ConfigError
from app.job_kinds import register_job_kinds
from app.jobs import kinds, queue
from app.jobs.worker import run_now
from tests.conftest import READY_DETAILS
from tests.harness import PgBouncer, find_pgbouncer

PRIMARY_LIMIT, DATA_LIMIT = 0.2, 1.0  # seconds; single mode takes the longer for its engine
POOL = 2
LIMITS = {
    "PRIMARY_STATEMENT_TIMEOUT": str(PRIMARY_LIMIT),
    "DATA_STATEMENT_TIMEOUT": str(DATA_LIMIT),
    "PRIMARY_POOL_SIZE": str(POOL),
    "PRIMARY_MAX_OVERFLOW": "0",
    "DATA_POOL_SIZE": str(POOL),
    "DATA_MAX_OVERFLOW": "0",
    "DB_POOL_TIMEOUT": "1",
}


@pytest.fixture(scope="module")
def app(committed_env) -> Iterator[Flask]:
    """An app with short limits and pools of two, and two routes of this test's own (made
    before its first request, as Flask requires): a statement that sleeps on one engine, and
    a job run inside a request."""
    application = create_app({**committed_env, **LIMITS})

    @allow(PUBLIC)
    def sleep(role: str):
        seconds = float(request.args.get("seconds", "0"))
        db_session().connection_for(role).execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
        return jsonify(slept=seconds)

    @allow(PUBLIC)
    def run_job(job_id: int):
        outcome = run_now(application.extensions["backoffice"], job_id)
        return jsonify(status=outcome.status, error=outcome.error)

    application.add_url_rule("/api/test-only/sleep/<role>", view_func=sleep)
    application.add_url_rule(
        "/api/test-only/jobs/<int:job_id>", view_func=run_job, methods=["POST"]
    )
    yield application
    application.extensions["backoffice"].close()


@pytest.fixture
def client(app):
    return app.test_client()


def engine_name(role: str, split: bool) -> str:
    """What answers and metrics call an engine: its role, or `database` in single mode."""
    return role if split else "database"


def counter(client, name: str, engine: str) -> float:
    text_ = client.get("/metrics", headers=READY_DETAILS).get_data(as_text=True)
    line = next(x for x in text_.splitlines() if x.startswith(f'{name}{{engine="{engine}"}}'))
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize("role", [PRIMARY, DATA])
def test_a_statement_past_its_timeout_answers_503_naming_the_engine_and_the_app_goes_on(
    client, role, split
):
    name = engine_name(role, split)
    before = counter(client, "backoffice_db_statement_timeouts_total", name)
    started = time.monotonic()
    response = client.get(f"/api/test-only/sleep/{role}?seconds=5")
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.json["error"]["code"] == f"{name}_statement_timeout"
    assert "Traceback" not in response.get_data(as_text=True)
    assert time.monotonic() - started < 4, "the statement was cut, not waited for"
    assert counter(client, "backoffice_db_statement_timeouts_total", name) == before + 1
    # The same pool, the same connections: the next requests work.
    assert client.get(f"/api/test-only/sleep/{role}?seconds=0").status_code == 200
    assert client.get("/health/ready", headers=READY_DETAILS).status_code == 200


def test_each_engine_has_its_own_limit_and_one_database_the_longer(client, split):
    between = (PRIMARY_LIMIT + DATA_LIMIT) / 2
    data = client.get(f"/api/test-only/sleep/{DATA}?seconds={between}")
    primary = client.get(f"/api/test-only/sleep/{PRIMARY}?seconds={between}")
    assert data.status_code == 200
    # Split: the primary's short limit; single: one engine, so the longer of the two.
    assert primary.status_code == (503 if split else 200)


def test_statements_outside_requests_keep_the_servers_own_setting(app):
    """Migrations, moves, backups and CLI commands in a process that also serves requests."""
    engines = app.extensions["backoffice"].engines
    for role in (PRIMARY, DATA):
        with engines.begin(role) as conn:
            assert conn.execute(text("SHOW statement_timeout")).scalar() == "0"
            conn.execute(text("SELECT pg_sleep(:s)"), {"s": PRIMARY_LIMIT + 0.2})


class SlowJob:
    """A job whose one statement outlasts the web requests' limits."""

    def run(self, ctx):
        with ctx.data_transaction() as conn:
            conn.execute(text("SELECT pg_sleep(:s)"), {"s": DATA_LIMIT + 0.5})
            ctx.publish(conn, {"slept": True})
        return {"slept": True}

    def on_failed(self, conn, params, error) -> None:
        pass

    def on_cancelled(self, conn, params) -> None:
        pass


@pytest.fixture
def slow_job(app) -> Iterator[int]:
    bo = app.extensions["backoffice"]
    kinds.register("export", SlowJob)
    try:
        with session_scope(bo.session_factory) as session:
            job_id = queue.enqueue(session, "export", {}, max_attempts=1).id
        yield job_id
    finally:
        register_job_kinds()


def test_a_bulk_job_is_not_cut_by_the_web_timeout_even_inside_a_request(client, slow_job):
    # A request running a job (as the CLI's synchronous mode runs one in any process): the
    # job's statements take JOB_STATEMENT_TIMEOUT (none by default), not the request's.
    response = client.post(f"/api/test-only/jobs/{slow_job}")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json == {"status": "succeeded", "error": None}


@pytest.mark.parametrize("role", [PRIMARY, DATA])
def test_a_full_pool_answers_503_busy_with_retry_after_then_recovers(app, client, role, split):
    name = engine_name(role, split)
    before = counter(client, "backoffice_db_pool_timeouts_total", name)
    engine = app.extensions["backoffice"].engines[role]
    held = [engine.connect() for _ in range(POOL)]  # every connection of the pool
    try:
        started = time.monotonic()
        response = client.get(f"/api/test-only/sleep/{role}")
        waited = time.monotonic() - started
    finally:
        for conn in held:
            conn.close()
    assert response.status_code == 503, response.get_data(as_text=True)
    # As for an engine that is down: `data_engine_busy`, or `database_busy` in single mode.
    assert response.json["error"]["code"] == (f"{role}_engine_busy" if split else "database_busy")
    assert int(response.headers["Retry-After"]) > 0
    assert waited < 5, "refused after DB_POOL_TIMEOUT (1 s), not left hanging"
    # The pool freed: served again, and the refusal is counted.
    assert client.get(f"/api/test-only/sleep/{role}").status_code == 200
    assert counter(client, "backoffice_db_pool_timeouts_total", name) == before + 1


def test_timeouts_through_pgbouncer_in_transaction_mode_end_with_their_transaction(
    pg_servers, make_env, tmp_path
):
    """PgBouncer refuses or ignores startup `options`, and a session-wide SET would stay on
    a server connection the next client gets: the limit is a SET LOCAL, gone at commit."""
    binary, reason = find_pgbouncer()
    if binary is None:
        pytest.skip(reason)
    bouncer = PgBouncer(binary, tmp_path / "pgbouncer", pg_servers[PRIMARY].url, pool_size=1)
    try:
        env = make_env("bounced")
        env["PRIMARY_DATABASE_URL"] = bouncer.url(env["PRIMARY_DATABASE_URL"])
        env["PRIMARY_STATEMENT_TIMEOUT"] = env["DATA_STATEMENT_TIMEOUT"] = "0.2"
        settings = Settings.from_env(env)
        engines = Engines(settings)
        token = web_request_started()
        try:
            with pytest.raises(OperationalError) as cut, engines.begin(PRIMARY) as conn:
                conn.execute(text("SELECT pg_sleep(2)"))
        finally:
            web_request_ended(token)
        assert cut.value.orig.sqlstate == "57014"
        engines.dispose()
        # Another client, on PgBouncer's one server connection: the server's own setting.
        with psycopg.connect(settings.primary.conninfo, prepare_threshold=None) as conn:
            assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    finally:
        bouncer.stop()


def test_timeout_and_pool_settings_have_defaults_and_refuse_nonsense():
    settings = Settings.from_env({})
    assert (settings.primary_statement_timeout, settings.data_statement_timeout) == (5, 60)
    assert settings.job_statement_timeout == 0
    assert (settings.primary_pool.recycle, settings.data_pool.recycle) == (300, 1800)
    assert Settings.from_env({"DATA_STATEMENT_TIMEOUT": "0"}).data_statement_timeout == 0
    for name, value in (("PRIMARY_STATEMENT_TIMEOUT", "-1"), ("DATA_POOL_RECYCLE", "0")):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})
