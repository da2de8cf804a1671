"""The cross-engine reference check: cached answers, counted queries, notices, clear errors."""

import time

import pytest

from app.audit import Actor
from app.customers import service as customers
from app.db.session import session_scope
from app.errors import Refused
from tests.conftest import create_user

ACTOR = Actor(None, "tests")


@pytest.fixture
def bo(committed_app):
    backoffice = committed_app.extensions["backoffice"]
    backoffice.notices.ensure_listening()
    deadline = time.monotonic() + 5
    while not backoffice.notices.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert backoffice.notices.connected
    return backoffice


@pytest.fixture
def queries(bo, primary_queries):
    return primary_queries


def new_customer(bo, code, status="active"):
    with session_scope(bo.session_factory) as session:
        return customers.create_customer(
            session, ACTOR, code=code, name=code.title(), status=status
        )


def refusal(bo, kind, ident) -> str:
    with bo.session_factory() as session, pytest.raises(Refused) as info:
        bo.references.require(session, kind, ident)
    return info.value.code


def test_a_warm_answer_costs_no_query_and_a_cold_one_costs_one(bo, queries):
    customer = new_customer(bo, "WARM")
    time.sleep(0.1)  # the creation notice has evicted any stale "unknown"
    with bo.session_factory() as session:
        queries.clear()
        assert bo.references.customer(session, customer.id).label == "WARM"
        assert len(queries) == 1, "cold: one query"
        for _ in range(20):
            bo.references.customer(session, customer.id)
        assert len(queries) == 1, "warm: none"


def test_unknown_and_inactive_customers_and_users_are_clear_4xx(bo):
    asleep = new_customer(bo, "ASLEEP", status="inactive")
    assert refusal(bo, "customer", asleep.id) == "inactive_customer"
    assert refusal(bo, "customer", 987654321) == "unknown_customer"
    assert refusal(bo, "customer", 2**70) == "unknown_customer"
    user = create_user(bo.session_factory, "viewer")
    with session_scope(bo.session_factory) as session:
        from app.auth import users

        users.update_user(session, ACTOR, users.get_user(session, user.id), is_active=False)
    time.sleep(0.1)
    assert refusal(bo, "user", user.id) == "inactive_user"
    assert refusal(bo, "user", 987654321) == "unknown_user"


def test_deactivating_a_customer_is_seen_at_once(bo):
    customer = new_customer(bo, "SOONGONE")
    with bo.session_factory() as session:
        bo.references.customer(session, customer.id)  # cached as active
    with session_scope(bo.session_factory) as session:
        customers.update_customer(
            session, ACTOR, customers.get_customer(session, customer.id), status="inactive"
        )
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and refusal_or_none(bo, customer.id) is None:
        time.sleep(0.01)
    assert refusal_or_none(bo, customer.id) == "inactive_customer"


def test_a_customer_created_after_a_miss_is_known_at_once(bo):
    with bo.session_factory() as session:
        next_id = (
            session.connection_for("primary")
            .exec_driver_sql(
                "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END "
                "FROM customer.customers_id_seq"
            )
            .scalar()
        )
    assert refusal(bo, "customer", next_id) == "unknown_customer"  # cached as unknown
    customer = new_customer(bo, "NEWBORN")
    assert customer.id == next_id
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline and refusal_or_none(bo, customer.id) is not None:
        time.sleep(0.01)
    assert refusal_or_none(bo, customer.id) is None


def refusal_or_none(bo, customer_id):
    try:
        with bo.session_factory() as session:
            bo.references.customer(session, customer_id)
    except Refused as exc:
        return exc.code
    return None
