"""Liveness and readiness, in both layouts, with an engine stopped, and JSON errors."""

import os

import pytest
from prometheus_client import REGISTRY

from app import create_app
from app.db import migrations
from tests.conftest import METRICS_TOKEN, PASSWORD, READY_DETAILS, login


def statements_sent() -> float:
    """Statements this process sent to any engine, as /metrics counts them."""
    family = next(m for m in REGISTRY.collect() if m.name == "backoffice_db_queries")
    return sum(s.value for s in family.samples if s.name.endswith("_total"))


def test_live_answers_ok(client):
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "pid": os.getpid()}, "which worker answered"


def test_anonymous_ready_says_only_the_status_and_costs_no_query(app, client):
    """A load balancer needs the status code; the URLs, revisions, pools and listener errors
    are for admins. Anyone may ask, so the answer is reused for a few seconds."""
    assert client.get("/health/ready").json == {"status": "ready"}
    before = statements_sent()
    for _ in range(20):
        response = client.get("/health/ready")
        assert response.status_code == 200
        assert response.json == {"status": "ready"}
    assert statements_sent() == before, "no statement per anonymous request"


def test_ready_details_need_an_admin_or_the_metrics_token(client, make_user):
    viewer = make_user("viewer")
    login(client, viewer.email)
    assert client.get("/health/ready").json == {"status": "ready"}, "a viewer sees the status"
    wrong = {"Authorization": "Bearer not-the-metrics-token"}
    assert client.get("/health/ready", headers=wrong).json == {"status": "ready"}
    assert "engines" in client.get("/health/ready", headers=READY_DETAILS).json


def test_ready_reports_mode_and_each_engine_to_an_admin(client, as_admin, split):
    response = client.get("/health/ready")
    assert response.status_code == 200, response.json
    body = response.json
    assert body["status"] == "ready"
    assert body["mode"] == ("split" if split else "single")
    for role in ("primary", "data"):
        entry = body["engines"][role]
        assert entry["reachable"] is True
        assert entry["latency_ms"] >= 0
        assert entry["migrations"]["state"] == "current"
        assert entry["pool"]["size"] >= 1
        assert "***" in entry["url"] or "@" not in entry["url"].split("//")[1].split("@")[0]


def test_ready_is_503_while_a_tree_is_behind(fresh_app):
    engines = fresh_app.extensions["backoffice"].engines
    migrations.upgrade(engines, ["primary"])
    anonymous = fresh_app.test_client().get("/health/ready")
    assert anonymous.status_code == 503
    assert anonymous.json == {"status": "unavailable"}
    response = fresh_app.test_client().get("/health/ready", headers=READY_DETAILS)
    assert response.status_code == 503
    assert response.json["problems"] == ["data migrations empty"]
    assert response.json["engines"]["primary"]["migrations"]["state"] == "current"


@pytest.fixture
def spare_app(split, tmp_path, spare_servers):
    """An app on servers of its own, which a test may stop."""
    servers = spare_servers
    env = {
        "APP_ENV": "test",
        "SPLIT_DB_MODE": str(split).lower(),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "SECRET_KEY": "k",
        "METRICS_TOKEN": METRICS_TOKEN,
    }
    for role, server in servers.items():
        env[f"{role.upper()}_DATABASE_URL"] = server.url
    application = create_app(env)
    migrations.upgrade(application.extensions["backoffice"].engines)
    yield application, servers
    application.extensions["backoffice"].engines.dispose()


def test_ready_names_the_engine_that_is_down_and_recovers(spare_app, split):
    application, servers = spare_app
    client = application.test_client()
    assert client.get("/health/ready", headers=READY_DETAILS).status_code == 200
    assert client.get("/health/ready").json == {"status": "ready"}

    down = "data" if split else "primary"
    servers[down].embedded.stop()
    response = client.get("/health/ready", headers=READY_DETAILS)
    assert response.status_code == 503
    anonymous = client.get("/health/ready")
    assert anonymous.status_code == 503, "a fresh report serves anonymous callers too"
    assert anonymous.json == {"status": "unavailable"}
    engines = response.json["engines"]
    assert engines["data"]["reachable"] is False
    if split:
        assert engines["primary"]["reachable"] is True, "the primary keeps serving"
        assert response.json["problems"] == ["data engine unreachable"]
    else:
        assert response.json["problems"] == [
            "primary engine unreachable",
            "data engine unreachable",
        ]

    servers[down].embedded.start()
    assert client.get("/health/ready", headers=READY_DETAILS).status_code == 200, "recovers"
    assert client.get("/health/ready").json == {"status": "ready"}


def test_api_errors_are_json_and_page_errors_are_pages(client):
    response = client.get("/api/no/such/route")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"
    response = client.post("/health/live")
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "<h1>Not found</h1>" in response.get_data(as_text=True)


def test_with_the_data_engine_down_auth_and_customers_work_and_data_routes_say_so(spare_app, split):
    from tests.conftest import create_user

    application, servers = spare_app
    factory = application.extensions["backoffice"].session_factory
    operator = create_user(factory, "operator")
    client = application.test_client()
    login(client, operator.email)
    assert client.get("/api/imports").status_code == 200

    servers["data" if split else "primary"].embedded.stop()
    data_route = client.get("/api/imports")
    assert data_route.status_code == 503
    if not split:  # one database: everything waits for it
        assert data_route.json["error"]["code"] == "database_unavailable"
        return
    assert data_route.json["error"]["code"] == "data_engine_unavailable"
    assert "data database is unavailable" in data_route.json["error"]["message"]
    assert client.get("/api/jobs").json["error"]["code"] == "data_engine_unavailable"
    assert client.get("/api/customers").status_code == 200, "the primary keeps serving"
    assert client.get("/api/auth/me").status_code == 200
    # The pages too: customers and the account work, a data page names the engine that is down.
    assert client.get("/customers").status_code == 200
    assert client.get("/account").status_code == 200
    browser = application.test_client()  # signing in on the page works too
    signed_in = browser.post("/login", data={"email": operator.email, "password": PASSWORD})
    assert signed_in.status_code == 302 and signed_in.headers["Location"] == "/"
    page = client.get("/imports")
    assert page.status_code == 503 and page.mimetype == "text/html"
    assert "The data database is unavailable" in page.get_data(as_text=True)
    dashboard = client.get("/").get_data(as_text=True)
    assert "unreachable" in dashboard and "the queue cannot be read" in dashboard
    again = application.test_client()
    assert login(again, operator.email)

    servers["data"].embedded.start()
    assert client.get("/api/imports").status_code == 200, "recovers by itself"
