"""Ending sessions reaches every worker of a real gunicorn within a second."""

import time

import pytest
from sqlalchemy import text

from app.db.notices import LISTENER_APP_NAME
from tests.conftest import PASSWORD, READY_DETAILS, create_user
from tests.harness import Gunicorn, login

WORKERS = 4


@pytest.fixture(scope="module")
def server(committed_env):
    gunicorn = Gunicorn(committed_env, workers=WORKERS)
    yield gunicorn
    gunicorn.stop()


@pytest.fixture
def workers(server):
    connections = server.pinned_connections()
    yield connections
    for conn in connections:
        conn.close()


@pytest.fixture(scope="module")
def admin(factory, server):
    user = create_user(factory, "admin")
    return login(server.pinned_connections()[0], user.email, PASSWORD)


def warm(workers, headers) -> None:
    """Every worker has validated, and cached, the session."""
    for conn in workers:
        assert conn.request("GET", "/api/auth/me", headers=headers).status == 200
    time.sleep(0.3)  # listeners connected: the next validation is the one that is cached
    for conn in workers:
        assert conn.request("GET", "/api/auth/me", headers=headers).status == 200
        before = conn.request("GET", "/health/ready", headers=READY_DETAILS).body["session_cache"]
        assert conn.request("GET", "/api/auth/me", headers=headers).status == 200
        after = conn.request("GET", "/health/ready", headers=READY_DETAILS).body["session_cache"]
        assert after["trusted"] and after["listener"] == "listening", after["listener"]
        assert after["hits"] == before["hits"] + 1, f"worker {conn.pid} answered from its cache"


def seconds_until_every_worker(workers, headers, still_old) -> float:
    """Seconds until no worker answers `/api/auth/me` the way it did before the change."""
    started = time.monotonic()
    pending = list(workers)
    while pending and time.monotonic() - started < 5:
        pending = [
            c for c in pending if still_old(c.request("GET", "/api/auth/me", headers=headers))
        ]
    assert not pending, f"workers {[c.pid for c in pending]} still accept the old session"
    return time.monotonic() - started


def kill_listeners(factory) -> int:
    with factory() as session:
        killed = (
            session.connection_for("primary")
            .execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name AND datname = current_database()"
                ),
                {"name": LISTENER_APP_NAME},
            )
            .scalar()
        )
        session.commit()
    return killed


CHANGES = {
    "disable": lambda user: ("PATCH", f"/api/users/{user.id}", {"is_active": False}),
    "reset password": lambda user: ("POST", f"/api/users/{user.id}/reset-password", {}),
    "delete": lambda user: ("DELETE", f"/api/users/{user.id}", None),
}


@pytest.mark.parametrize("kill_listeners_first", [False, True], ids=["listening", "killed"])
@pytest.mark.parametrize("change", list(CHANGES))
def test_a_change_through_one_worker_ends_the_session_in_every_worker(
    factory, workers, admin, change, kill_listeners_first
):
    assert len({c.pid for c in workers}) == WORKERS
    victim = create_user(factory, "operator")
    headers = login(workers[0], victim.email, PASSWORD)
    warm(workers, headers)
    if kill_listeners_first:
        assert kill_listeners(factory) >= WORKERS
    method, path, body = CHANGES[change](victim)
    assert workers[-1].request(method, path, body=body, headers=admin).status in (200, 204)
    elapsed = seconds_until_every_worker(workers, headers, lambda r: r.status == 200)
    assert elapsed < 1.0


@pytest.mark.parametrize("kill_listeners_first", [False, True], ids=["listening", "killed"])
def test_a_role_change_reaches_every_worker(factory, workers, admin, kill_listeners_first):
    victim = create_user(factory, "operator")
    bearer = {"Authorization": "Bearer "}
    headers = login(workers[0], victim.email, PASSWORD)
    # A token of the same user: the role change must reach cached tokens too.
    token = workers[0].request(
        "POST",
        "/api/auth/tokens",
        body={"name": "cron", "current_password": PASSWORD},
        headers=headers,
    )
    bearer["Authorization"] += token.body["secret"]
    warm(workers, bearer)
    if kill_listeners_first:
        kill_listeners(factory)
    reply = workers[1].request(
        "PATCH", f"/api/users/{victim.id}", body={"role": "viewer"}, headers=admin
    )
    assert reply.status == 200
    elapsed = seconds_until_every_worker(
        workers, bearer, lambda r: r.status == 200 and r.body["user"]["role"] == "operator"
    )
    assert elapsed < 1.0
    for conn in workers:
        assert conn.request("GET", "/api/auth/me", headers=bearer).body["user"]["role"] == "viewer"
    assert workers[0].request("GET", "/api/auth/me", headers=headers).status == 401


@pytest.mark.parametrize("kill_listeners_first", [False, True], ids=["listening", "killed"])
def test_a_password_reset_ends_the_users_api_token_in_every_worker(
    factory, workers, admin, kill_listeners_first
):
    victim = create_user(factory, "operator")
    headers = login(workers[0], victim.email, PASSWORD)
    token = workers[0].request(
        "POST",
        "/api/auth/tokens",
        body={"name": "cron", "current_password": PASSWORD},
        headers=headers,
    )
    bearer = {"Authorization": f"Bearer {token.body['secret']}"}
    warm(workers, bearer)
    if kill_listeners_first:
        assert kill_listeners(factory) >= WORKERS
    reply = workers[-1].request(
        "POST", f"/api/users/{victim.id}/reset-password", body={}, headers=admin
    )
    assert reply.status == 200
    elapsed = seconds_until_every_worker(workers, bearer, lambda r: r.status == 200)
    assert elapsed < 1.0
    for conn in workers:
        assert conn.request("GET", "/api/auth/me", headers=bearer).status == 401


def test_throttling_holds_across_workers(factory, workers):
    victim = create_user(factory, "viewer")
    for n in range(5):  # spread over the workers
        reply = workers[n % WORKERS].request(
            "POST", "/api/auth/login", body={"email": victim.email, "password": "wrong"}
        )
        assert reply.status == 401
    for conn in workers:
        reply = conn.request(
            "POST", "/api/auth/login", body={"email": victim.email, "password": PASSWORD}
        )
        assert reply.status == 429 and int(reply.headers["Retry-After"]) > 0


def test_a_customer_deactivated_through_one_worker_is_refused_by_every_worker(
    factory, workers, admin
):
    from app.audit import Actor
    from app.customers import service as customers
    from app.db.session import session_scope

    with session_scope(factory) as session:
        customer = customers.create_customer(
            session, Actor(None, "tests"), code="SPREAD", name="Spread"
        )
    for conn in workers:  # every worker has checked, and cached, the customer as active
        reply = conn.upload(admin, customer.id)
        assert reply.status == 202, reply.body
        # A check made before the worker's listener was up is not kept: once it listens, the
        # next check is the one that is cached.
        deadline = time.monotonic() + 10
        while not reference_cache(conn)["trusted"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.upload(admin, customer.id).status == 202
        before = reference_cache(conn)
        assert conn.upload(admin, customer.id).status == 202
        after = reference_cache(conn)
        assert after["trusted"] and after["hits"] == before["hits"] + 1, "answered from cache"
    reply = workers[0].request(
        "PATCH", f"/api/customers/{customer.id}", body={"status": "inactive"}, headers=admin
    )
    assert reply.status == 200
    started = time.monotonic()
    pending = list(workers)
    while pending and time.monotonic() - started < 5:
        pending = [c for c in pending if c.upload(admin, customer.id).status == 202]
    assert not pending, f"workers {[c.pid for c in pending]} still accept the customer"
    assert time.monotonic() - started < 1.0
    for conn in workers:
        reply = conn.upload(admin, customer.id)
        assert reply.status == 422 and reply.body["error"]["code"] == "inactive_customer"


def reference_cache(conn) -> dict:
    return conn.request("GET", "/health/ready", headers=READY_DETAILS).body["reference_cache"]
