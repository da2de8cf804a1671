"""The session cache in one process: what it costs the primary database, and when it is
not trusted. (Across gunicorn workers: tests/test_auth_workers.py.)"""

import time

import pytest
from sqlalchemy import text

from app import create_app
from app.audit import Actor
from app.auth import sessions, users
from app.db.session import session_scope
from tests.conftest import PASSWORD, READY_DETAILS, create_user, login

QUIET = 0.3  # seconds for a listener to (re)connect or a notice to arrive, on loopback


@pytest.fixture(scope="module")
def cached_app(committed_app):
    """The session cache at its default TTL (30 s), trusted while the listener is up."""
    assert cache_of(committed_app).ttl == 30
    return committed_app


def cache_of(app):
    return app.extensions["backoffice"].session_cache


def wait_for(predicate, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def logged_in(cached_app):
    user = create_user(cached_app.extensions["backoffice"].session_factory, "viewer")
    client = cached_app.test_client()
    login(client, user.email)
    assert client.get("/api/auth/me").status_code == 200  # starts the listener
    assert wait_for(lambda: cache_of(cached_app).trusted)
    return user, client


def test_a_warm_cache_costs_the_primary_database_nothing(logged_in, primary_queries):
    _user, client = logged_in
    assert client.get("/api/auth/me").status_code == 200  # cold: validated and cached
    assert len(primary_queries) == 1, primary_queries
    assert primary_queries[0].lstrip().startswith("UPDATE config.sessions")
    for _ in range(50):
        assert client.get("/api/auth/me").status_code == 200
    assert len(primary_queries) == 1, "fifty warm requests, no query"


def test_a_cold_session_costs_one_query(cached_app, logged_in, primary_queries):
    _user, client = logged_in
    cache_of(cached_app).clear()
    assert client.get("/api/auth/me").status_code == 200
    assert len(primary_queries) == 1


def test_the_cache_is_bypassed_while_the_listener_is_down(cached_app, logged_in, primary_queries):
    _user, client = logged_in
    client.get("/api/auth/me")
    cache = cache_of(cached_app)
    with cached_app.extensions["backoffice"].session_factory() as session:
        session.connection_for("primary").execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'backoffice-listener' AND pid <> pg_backend_pid()"
            )
        )
    assert wait_for(lambda: not cache.trusted, 2)
    primary_queries.clear()
    # The listener waits FIRST_BACKOFF (0.25 s) before reconnecting: these run within it.
    client.get("/api/auth/me")
    client.get("/api/auth/me")
    assert len(primary_queries) == 2, "not trusted: every request asked the database"
    assert not cache.trusted
    assert wait_for(lambda: cache.trusted, 5), "the listener reconnects by itself"
    assert len(cache) == 0, "emptied on reconnect"
    primary_queries.clear()
    client.get("/api/auth/me")
    client.get("/api/auth/me")
    assert len(primary_queries) == 1, "trusted again: one query, then the cache"


def test_a_rolled_back_change_sends_nothing_and_ends_nothing(
    cached_app, logged_in, primary_queries
):
    user, client = logged_in
    client.get("/api/auth/me")
    cache = cache_of(cached_app)
    generation = cache.generation
    factory = cached_app.extensions["backoffice"].session_factory
    with factory() as session:
        target = users.get_user(session, user.id)
        users.update_user(session, Actor(None, "tests"), target, is_active=False)
        session.rollback()
    time.sleep(QUIET)
    assert cache.generation == generation, "no notice arrived"
    primary_queries.clear()
    assert client.get("/api/auth/me").status_code == 200
    assert primary_queries == [], "still served from the cache"


def test_a_committed_change_ends_the_cached_session_at_once(cached_app, logged_in):
    user, client = logged_in
    client.get("/api/auth/me")
    with session_scope(cached_app.extensions["backoffice"].session_factory) as session:
        users.set_password(
            session,
            Actor(None, "tests"),
            users.get_user(session, user.id),
            "an entirely new password",
            must_change=False,
            action="user.password_reset",
        )
    assert wait_for(lambda: client.get("/api/auth/me").status_code == 401, 1.0)


def test_ending_every_session_empties_every_cache(cached_app, logged_in):
    _user, client = logged_in
    client.get("/api/auth/me")
    with session_scope(cached_app.extensions["backoffice"].session_factory) as session:
        ended, _revoked = sessions.end_every_session(session, Actor(None, "tests"), reason="drill")
        assert ended >= 1
    assert wait_for(lambda: client.get("/api/auth/me").status_code == 401, 1.0)


def test_readiness_reports_the_cache_and_its_listener(cached_app, logged_in):
    report = (
        cached_app.test_client().get("/health/ready", headers=READY_DETAILS).json["session_cache"]
    )
    assert report["enabled"] and report["trusted"] and report["listener"] == "listening"
    assert report["ttl_seconds"] == 30 and report["size"] >= 0


def test_auth_answers_503_when_the_primary_is_down(spare_servers, tmp_path, split):
    env = {
        "APP_ENV": "test",
        "SPLIT_DB_MODE": str(split).lower(),
        "SECRET_KEY": "k",
        "INSTANCE_PATH": str(tmp_path / "instance"),
    }
    for role, server in spare_servers.items():
        env[f"{role.upper()}_DATABASE_URL"] = server.url
    application = create_app(env)
    try:
        from app.db import migrations

        migrations.upgrade(application.extensions["backoffice"].engines)
        user = create_user(application.extensions["backoffice"].session_factory, "viewer")
        client = application.test_client()
        login(client, user.email, PASSWORD)
        spare_servers["primary"].embedded.stop()
        me = client.get("/api/auth/me")
        expected = "primary_engine_unavailable" if split else "database_unavailable"
        assert me.status_code == 503 and me.json["error"]["code"] == expected
        again = client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
        assert again.status_code == 503 and "error" in again.json
    finally:
        application.extensions["backoffice"].close()
