"""/metrics: Prometheus text for admins or a scraper's token; counters that move."""

import re

from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from app.db import migrations
from tests.conftest import login


def value(body: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} ([0-9.e+-]+)$", body, re.M)
    assert match, f"{name}{labels} not in:\n{body}"
    return float(match.group(1))


def test_only_admins_read_metrics(client, make_user):
    assert client.get("/metrics").status_code == 401
    viewer = make_user("viewer")
    login(client, viewer.email)
    assert client.get("/metrics").status_code == 403


def test_metrics_count_statements_per_engine_and_jobs(client, make_user, split):
    admin = make_user("admin")
    login(client, admin.email)
    first = client.get("/metrics")
    assert first.status_code == 200 and first.mimetype == "text/plain"
    body = first.get_data(as_text=True)
    engines = ("primary", "data") if split else ("database",)
    for engine in engines:
        assert value(body, "backoffice_db_pool_size", f'{{engine="{engine}"}}') >= 1
    label = f'{{engine="{engines[0]}"}}'
    before = value(body, "backoffice_db_queries_total", label)
    client.get("/api/users")
    after = value(
        client.get("/metrics").get_data(as_text=True), "backoffice_db_queries_total", label
    )
    assert after > before, "statements are counted"
    assert "# TYPE backoffice_session_cache_hits_total counter" in body
    assert "backoffice_change_listener_up" in body


def test_a_scraper_reads_metrics_with_the_configured_token(make_env):
    env = make_env("metrics")
    env["METRICS_TOKEN"] = "scrape-me-please"
    application = create_app(env)
    try:
        migrations.upgrade(application.extensions["backoffice"].engines)
        client = application.test_client()
        ok = client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"})
        assert ok.status_code == 200 and "backoffice_process_info" in ok.get_data(as_text=True)
        wrong = client.get("/metrics", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401
    finally:
        application.extensions["backoffice"].close()


def samples(body: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape, parsed by prometheus_client's own parser, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def sample(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_timed_per_route_group_and_statements_per_engine(client, as_admin, split):
    engine = "primary" if split else "database"
    before = samples(client.get("/metrics").get_data(as_text=True))
    assert client.get("/api/users").status_code == 200
    assert client.get("/no/such/page").status_code == 404
    after = samples(client.get("/metrics").get_data(as_text=True))

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("backoffice_http_request_duration_seconds_count", group="users") == 1
    assert grew("backoffice_http_requests_total", group="users", status="200") == 1
    assert grew("backoffice_http_requests_total", group="unmatched", status="404") == 1
    assert grew("backoffice_http_requests_total", group="metrics", status="200") == 1, "the scrape"
    users_bucket = {"group": "users", "le": "+Inf"}
    assert sample(after, "backoffice_http_request_duration_seconds_bucket", **users_bucket) >= 1
    # Every statement is in its engine's histogram and in the older counter alike.
    assert grew("backoffice_db_query_duration_seconds_count", engine=engine) >= 1
    assert sample(after, "backoffice_db_query_duration_seconds_count", engine=engine) == sample(
        after, "backoffice_db_queries_total", engine=engine
    )
    assert grew("backoffice_db_query_duration_seconds_sum", engine=engine) > 0


def test_refused_cross_engine_references_are_counted_by_kind(client, as_admin):
    _admin, headers = as_admin
    name = "backoffice_reference_refusals_total"
    before = samples(client.get("/metrics").get_data(as_text=True))
    body = {"dataset": "products", "customer_id": 987654321}
    refused = client.post("/api/exports", headers=headers, json=body)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "unknown_customer"
    after = samples(client.get("/metrics").get_data(as_text=True))
    assert sample(after, name, kind="customer", reason="unknown") == (
        sample(before, name, kind="customer", reason="unknown") + 1
    )
    assert sample(after, name, kind="customer", reason="inactive") == sample(
        before, name, kind="customer", reason="inactive"
    )
