"""Login throttling on a real gunicorn behind one (simulated) proxy: the proxy's
X-Forwarded-For says which address each request comes from."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from app import create_app
from app.config import ConfigError, Settings
from tests.conftest import PASSWORD, create_user
from tests.harness import Connection, Gunicorn, login

PER_ACCOUNT_AND_CLIENT = 5
PER_CLIENT = 20
PER_ACCOUNT = 50


@pytest.fixture(scope="module")
def env(committed_env):
    return {
        **committed_env,
        "TRUSTED_PROXY_COUNT": "1",
        "LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_CLIENT": str(PER_ACCOUNT_AND_CLIENT),
        "LOGIN_MAX_FAILURES_PER_CLIENT": str(PER_CLIENT),
        "LOGIN_MAX_FAILURES_PER_ACCOUNT": str(PER_ACCOUNT),
    }


@pytest.fixture(scope="module")
def factory(env):
    application = create_app(env)
    yield application.extensions["backoffice"].session_factory
    application.extensions["backoffice"].close()


@pytest.fixture(scope="module")
def server(env):
    gunicorn = Gunicorn(env, workers=4, threads=4)
    yield gunicorn
    gunicorn.stop()


def attempt(server, email: str, password: str, address: str):
    """One login from `address`, on a connection of its own."""
    conn = Connection(server.port)
    try:
        return conn.request(
            "POST",
            "/api/auth/login",
            body={"email": email, "password": password},
            headers={"X-Forwarded-For": address},
        )
    finally:
        conn.close()


def failed_checks(factory, email: str) -> int:
    """Passwords actually checked and found wrong, as the audit log tells."""
    with factory() as session:
        return (
            session.connection_for("primary")
            .execute(
                text(
                    "SELECT count(*) FROM config.audit_log "
                    "WHERE action = 'auth.login' AND outcome = 'failed' AND actor_email = :email"
                ),
                {"email": email},
            )
            .scalar_one()
        )


def test_parallel_wrong_passwords_are_checked_at_most_the_limit(server, factory):
    victim = create_user(factory)
    attempts = 12
    connections = [Connection(server.port) for _ in range(attempts)]
    for conn in connections:  # each connection open on a worker before the race starts
        assert conn.request("GET", "/health/live").status == 200
    start = threading.Barrier(attempts)
    statuses: list[int] = []

    def guess(conn: Connection) -> None:
        start.wait()
        reply = conn.request(
            "POST",
            "/api/auth/login",
            body={"email": victim.email, "password": "wrong"},
            headers={"X-Forwarded-For": "203.0.113.1"},
        )
        statuses.append(reply.status)

    threads = [threading.Thread(target=guess, args=(conn,)) for conn in connections]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for conn in connections:
        conn.close()

    assert sorted(statuses) == [401] * PER_ACCOUNT_AND_CLIENT + [429] * (
        attempts - PER_ACCOUNT_AND_CLIENT
    )
    assert failed_checks(factory, victim.email) == PER_ACCOUNT_AND_CLIENT


def test_failures_from_one_address_do_not_lock_the_owner_out_elsewhere(server, factory):
    owner = create_user(factory)
    for _ in range(PER_ACCOUNT_AND_CLIENT):
        assert attempt(server, owner.email, "wrong", "203.0.113.2").status == 401
    refused = attempt(server, owner.email, PASSWORD, "203.0.113.2")
    assert refused.status == 429, "the right password from the guessing address waits too"
    assert refused.body["error"]["code"] == "too_many_attempts"
    assert 0 < int(refused.headers["Retry-After"]) <= 15 * 60

    elsewhere = attempt(server, owner.email, PASSWORD, "198.51.100.2")
    assert elsewhere.status == 200, elsewhere.body
    assert elsewhere.body["user"]["email"] == owner.email


def test_failures_from_many_addresses_lock_the_account_with_retry_after(server, factory):
    owner = create_user(factory)
    addresses = [f"203.0.113.{100 + n}" for n in range(PER_ACCOUNT // PER_ACCOUNT_AND_CLIENT)]
    for address in addresses:
        for _ in range(PER_ACCOUNT_AND_CLIENT):
            if address == addresses[-1] and _ == PER_ACCOUNT_AND_CLIENT - 1:
                # One failure short of the account's limit: the owner still signs in.
                assert attempt(server, owner.email, PASSWORD, "198.51.100.3").status == 200
            assert attempt(server, owner.email, "wrong", address).status == 401

    locked = attempt(server, owner.email, PASSWORD, "198.51.100.4")
    assert locked.status == 429
    assert locked.body["error"]["code"] == "too_many_attempts"
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    assert failed_checks(factory, owner.email) == PER_ACCOUNT


def test_a_success_clears_the_count_of_its_account_and_address(server, factory):
    user = create_user(factory)
    address = "203.0.113.5"
    for _ in range(PER_ACCOUNT_AND_CLIENT - 1):
        assert attempt(server, user.email, "wrong", address).status == 401
    assert attempt(server, user.email, PASSWORD, address).status == 200
    for _ in range(PER_ACCOUNT_AND_CLIENT):
        assert attempt(server, user.email, "wrong", address).status == 401
    assert attempt(server, user.email, "wrong", address).status == 429


def test_a_success_does_not_clear_the_count_of_its_address(server, factory):
    # A guesser who owns an account cannot sign into it to start the address's count afresh.
    own = create_user(factory)
    address = "203.0.113.6"
    for n in range(PER_CLIENT - 1):
        reply = attempt(server, f"guess{n}@example.com", "wrong", address)
        assert reply.status == 401
    assert attempt(server, own.email, PASSWORD, address).status == 200
    assert attempt(server, "guess-last@example.com", "wrong", address).status == 401
    assert attempt(server, "guess-more@example.com", "wrong", address).status == 429


def test_forged_forwarded_addresses_before_the_proxys_count_for_nothing(server, factory):
    # One trusted proxy: only the address it appended (the last one) is the client's.
    user = create_user(factory)
    for n in range(PER_ACCOUNT_AND_CLIENT):
        forged = f"10.0.0.{n}, 203.0.113.7"
        assert attempt(server, user.email, "wrong", forged).status == 401
    assert attempt(server, user.email, "wrong", "10.9.9.9, 203.0.113.7").status == 429
    assert login(Connection(server.port), user.email, PASSWORD)  # no header: the proxy's own


@pytest.mark.parametrize("account", ["5", "4"])
def test_an_account_limit_one_address_could_reach_is_refused_at_start(account):
    with pytest.raises(ConfigError, match="LOGIN_MAX_FAILURES_PER_ACCOUNT"):
        Settings.from_env(
            {
                "LOGIN_MAX_FAILURES_PER_ACCOUNT_AND_CLIENT": "5",
                "LOGIN_MAX_FAILURES_PER_ACCOUNT": account,
            }
        )
