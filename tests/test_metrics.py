"""/metrics: Prometheus text for admins or a scraper's token; counters that move."""

import re

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
