"""`backoffice demo` fills an empty deployment with something to look at, and only an empty one."""

import re

from app import create_app
from tests.harness import backoffice


def test_demo_fills_an_empty_deployment_once(migrated_env):
    env = migrated_env
    done = backoffice(env, "demo")
    assert done.returncode == 0, done.stderr
    users = re.findall(
        r"^  (admin|operator|viewer)\s+(\S+@demo\.example)\s+(\S+)$", done.stdout, re.M
    )
    assert [role for role, _, _ in users] == ["admin", "operator", "viewer"]
    lines = [line for line in done.stdout.splitlines() if " import #" in line]
    assert len(lines) == 4, done.stdout
    assert all("rejected" in line for line in lines)
    assert re.search(r"acme-products\.csv .* rejected 2, superseded 1", done.stdout), done.stdout
    update = r"acme-products-update\.psv .*inserted 1, updated 1, unchanged 1, rejected 0"
    assert re.search(update, done.stdout), done.stdout

    application = create_app(env)
    try:
        client = application.test_client()
        _, email, password = users[0]
        login = client.post("/api/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200 and login.json["user"]["role"] == "admin"
        assert client.get("/api/customers").json["total"] == 3
        exports = client.get("/api/jobs?kind=export").json["jobs"]
        assert len(exports) == 4 and {j["status"] for j in exports} == {"succeeded"}
    finally:
        application.extensions["backoffice"].close()

    again = backoffice(env, "demo")
    assert again.returncode != 0
    assert "already has customers" in again.stderr
