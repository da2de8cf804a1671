"""No URL configured: the backoffice starts its own PostgreSQL under the instance folder."""

from sqlalchemy import text

from app import create_app
from app.db import migrations
from app.db.embedded import embedded_servers


def test_embedded_default_serves_ready_and_keeps_data_across_restarts(tmp_path, split):
    env = {"APP_ENV": "test", "INSTANCE_PATH": str(tmp_path), "SPLIT_DB_MODE": str(split)}
    application = create_app(env)
    engines = application.extensions["backoffice"].engines
    assert engines.targets["primary"].embedded
    migrations.upgrade(engines)
    assert application.test_client().get("/health/ready").status_code == 200
    if split:
        assert (
            engines.identity("primary").system_identifier
            != engines.identity("data").system_identifier
        ), "two servers, not two databases on one"
    with engines.begin("data") as conn:
        conn.execute(text("CREATE TABLE workspace.kept (v int)"))
        conn.execute(text("INSERT INTO workspace.kept VALUES (42)"))
    url = engines.masked_url("data")
    engines.dispose()
    for server in embedded_servers(tmp_path):
        server.stop()

    again = create_app(env)
    engines = again.extensions["backoffice"].engines
    try:
        assert engines.masked_url("data") == url, "a restarted server keeps its URL"
        with engines.connect("data") as conn:
            assert conn.execute(text("SELECT v FROM workspace.kept")).scalar() == 42
    finally:
        engines.dispose()
        for server in embedded_servers(tmp_path):
            server.stop()
