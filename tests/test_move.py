"""`db split` and `db merge` between two real servers, with a populated database, then the
whole app on the result; refusals, re-runs and an interrupted move."""

import io
import json

import psycopg
import pytest
from sqlalchemy.engine import make_url

from app import create_app
from app.database_url import parse_database_url
from app.db import migrations, move, table_copy
from app.db.schemas import DATA, PRIMARY
from tests.conftest import PASSWORD, _dispose, create_user, start_embedded_server
from tests.harness import backoffice

BASE = {"APP_ENV": "test", "SECRET_KEY": "test-secret-key"}


@pytest.fixture(scope="module")
def servers(pg_servers, split, tmp_path_factory):
    """Two servers whatever the run's mode: the run's own, plus one of this module's own."""
    if split:
        yield pg_servers[PRIMARY], pg_servers[DATA]
        return
    extra = start_embedded_server(tmp_path_factory.mktemp("move") / "second")
    yield pg_servers[PRIMARY], extra
    extra.embedded.stop()


@pytest.fixture
def databases(servers, tmp_path):
    """An empty database on each server, as libpq URLs, dropped afterwards."""
    made = [(server, server.create_database("move")) for server in servers]
    yield [server.database_url(name) for server, name in made]
    for server, name in made:
        server.drop_database(name)


def single(url, tmp_path):
    return {**BASE, "SPLIT_DB_MODE": "false", "DATABASE_URL": url, "INSTANCE_PATH": str(tmp_path)}


def split_env(primary, data, tmp_path):
    return {
        **BASE,
        "SPLIT_DB_MODE": "true",
        "PRIMARY_DATABASE_URL": primary,
        "DATA_DATABASE_URL": data,
        "INSTANCE_PATH": str(tmp_path),
    }


def conninfo(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def count(url: str, table: str) -> int:
    with psycopg.connect(conninfo(url)) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def populate(env) -> dict:
    """Users, sessions, customers, audit on the primary side; an import on the data side."""
    app = create_app(env)
    migrations.upgrade(app.extensions["backoffice"].engines)
    factory = app.extensions["backoffice"].session_factory
    admin = create_user(factory, "admin")
    for _ in range(3):
        create_user(factory, "operator")
    client = app.test_client()
    reply = client.post("/api/auth/login", json={"email": admin.email, "password": PASSWORD})
    csrf = {"X-CSRF-Token": reply.json["csrf_token"]}
    ids = []
    for n in range(25):
        made = client.post(
            "/api/customers", headers=csrf, json={"code": f"cust{n}", "name": f"Customer {n}"}
        )
        assert made.status_code == 201, made.json
        ids.append(made.json["customer"]["id"])
    upload = client.post(
        "/api/imports",
        headers=csrf,
        data={"customer_id": str(ids[0]), "file": (io.BytesIO(b"sku,n\na,1\n"), "a.csv")},
    )
    assert upload.status_code == 202, upload.json
    _dispose(app)
    return {"admin": admin.email, "customers": ids, "import": upload.json["import"]["id"]}


def check_app(env, seeded: dict) -> None:
    """The whole app on a layout: the old logins, customers and imports, and new writes (the
    new customer is added to `seeded`)."""
    assert backoffice(env, "db", "check").returncode == 0
    app = create_app(env)
    try:
        client = app.test_client()
        reply = client.post(
            "/api/auth/login", json={"email": seeded["admin"], "password": PASSWORD}
        )
        assert reply.status_code == 200, reply.json
        csrf = {"X-CSRF-Token": reply.json["csrf_token"]}
        listed = client.get("/api/customers?limit=1000").json
        assert sorted(customer["id"] for customer in listed["customers"]) == sorted(
            seeded["customers"]
        )
        code = f"new{len(seeded['customers'])}"
        made = client.post("/api/customers", headers=csrf, json={"code": code, "name": "New"})
        assert made.status_code == 201 and made.json["customer"]["id"] > max(seeded["customers"])
        seeded["customers"].append(made.json["customer"]["id"])
        assert client.get(f"/api/imports/{seeded['import']}").status_code == 200
        upload = client.post(
            "/api/imports",
            headers=csrf,
            data={
                "customer_id": str(seeded["customers"][1]),
                "file": (io.BytesIO(b"sku\nb\n"), "b.csv"),
            },
        )
        assert upload.status_code == 202, upload.json
    finally:
        _dispose(app)


def test_split_then_merge_with_the_app_on_each_layout(databases, tmp_path):
    old, new = databases
    seeded = populate(single(old, tmp_path))
    users_before = count(old, "config.users")

    # The new URL comes in the environment: on the command line, its password would be
    # visible to every local user (`ps`).
    from_env = {**single(old, tmp_path), "NEW_PRIMARY_DATABASE_URL": new}
    moved = backoffice(from_env, "db", "split", "--json")
    assert moved.returncode == 0, moved.stderr
    assert "password" not in moved.stderr
    assert make_url(new).password not in moved.stdout
    report = json.loads(moved.stdout)
    assert report["copied"] and report["environment"]["SPLIT_DB_MODE"] == "true"
    rows = {table["table"]: table["rows"] for table in report["tables"]}
    assert rows["config.users"] == users_before == count(new, "config.users")
    assert rows["customer.customers"] == 25
    assert rows["config.audit_log"] == count(old, "config.audit_log") > 25

    # The old copies stay readable and refuse every write, with a message saying why.
    with (
        psycopg.connect(conninfo(old)) as conn,
        pytest.raises(
            psycopg.errors.ReadOnlySqlTransaction,
            match=r"customer.customers moved to postgresql\+psycopg://",
        ),
    ):
        conn.execute("UPDATE customer.customers SET name = 'x'")
    assert count(old, "customer.customers") == 25

    after_split = split_env(new, old, tmp_path)
    check_app(after_split, seeded)
    again = backoffice(single(old, tmp_path), "db", "split", "--to-primary", new)
    assert again.returncode == 0 and "already done" in again.stdout

    dropped = backoffice(single(old, tmp_path), "db", "split", "--to-primary", new, "--drop-old")
    assert dropped.returncode == 0, dropped.stderr
    with psycopg.connect(conninfo(old)) as conn:
        schemas = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
    assert ("config",) not in schemas and ("customer",) not in schemas
    check_app(after_split, seeded)

    merged = backoffice(after_split, "db", "merge", "--json")
    assert merged.returncode == 0, merged.stderr
    report = json.loads(merged.stdout)
    assert report["environment"] == {"SPLIT_DB_MODE": "false", "DATABASE_URL": report["target"]}
    assert {table["table"]: table["rows"] for table in report["tables"]}["customer.customers"] == 27
    check_app(single(old, tmp_path), seeded)


def test_refusals_change_nothing(databases, servers, tmp_path):
    old, busy = databases
    populate(single(old, tmp_path))
    app = create_app(single(busy, tmp_path))  # a primary database with a user of its own
    migrations.upgrade(app.extensions["backoffice"].engines, [PRIMARY])
    create_user(app.extensions["backoffice"].session_factory, "admin")
    _dispose(app)
    refused = backoffice(single(old, tmp_path), "db", "split", "--to-primary", busy)
    assert (
        refused.returncode != 0
        and "not empty: config.audit_log (1 rows), config.users (1 rows)" in refused.stderr
    )
    assert "NEW_PRIMARY_DATABASE_URL" in refused.stderr, "a password on the command line"

    name = servers[1].create_database("move")
    try:  # a whole deployment of its own: it serves the data engine
        populate(single(servers[1].database_url(name), tmp_path))
        other = backoffice(
            single(old, tmp_path), "db", "split", "--to-primary", servers[1].database_url(name)
        )
        assert other.returncode != 0 and "serves the data engine" in other.stderr
    finally:
        servers[1].drop_database(name)
    same = backoffice(single(old, tmp_path), "db", "split", "--to-primary", old)
    assert same.returncode != 0 and "the target is the source database" in same.stderr
    wrong_mode = backoffice(split_env(busy, old, tmp_path), "db", "split", "--to-primary", busy)
    assert wrong_mode.returncode != 0 and "starts from single mode" in wrong_mode.stderr
    not_split = backoffice(single(old, tmp_path), "db", "merge")
    assert not_split.returncode != 0 and "starts from split mode" in not_split.stderr
    with psycopg.connect(conninfo(old)) as conn:  # still writable, still the primary
        conn.execute("UPDATE customer.customers SET name = name")
        roles = conn.execute("SELECT engine FROM public.backoffice_engine_roles").fetchall()
    assert sorted(roles) == [("data",), ("primary",)]


def test_an_interrupted_split_is_run_again(databases, tmp_path, monkeypatch):
    old, new = databases
    seeded = populate(single(old, tmp_path))
    app = create_app(single(old, tmp_path))
    engines = app.extensions["backoffice"].engines
    monkeypatch.setattr(move, "LOCK_TIMEOUT", "300ms")
    target = move.target_engine(parse_database_url("URL", new))

    def split():
        return move.move(
            engines.primary,
            target,
            direction="split",
            drop_old=False,
            source_name="old",
            target_name="new",
        )

    # A writer holds a customer row: the move cannot close the tables and stops, after it
    # prepared the target.
    writer = psycopg.connect(conninfo(old))
    writer.execute(
        "UPDATE customer.customers SET name = 'held' WHERE id = %s", [seeded["customers"][0]]
    )
    with pytest.raises(move.MoveRefused, match="could not close the source's primary tables"):
        split()
    writer.commit()
    writer.close()
    assert count(new, "config.users") == 0  # marked and migrated, nothing copied

    # Rows left on the target by the interrupted run are replaced, not added to.
    with psycopg.connect(conninfo(new)) as conn:
        conn.execute("INSERT INTO customer.customers (code, name) VALUES ('STRAY', 'Stray')")

    # During the copy, a writer on the old side waits (here until its statement timeout).
    outcome: list[str] = []
    set_sequences = table_copy.set_sequences

    def write_during_the_copy(dst, table):
        if not outcome:
            with psycopg.connect(conninfo(old), autocommit=True) as conn:
                conn.execute("SET statement_timeout = '500ms'")
                try:
                    conn.execute("UPDATE customer.customers SET name = 'late'")
                    outcome.append("written")
                except psycopg.errors.QueryCanceled:
                    outcome.append("waited")
        set_sequences(dst, table)

    monkeypatch.setattr(move, "set_sequences", write_during_the_copy)
    report = split()
    assert outcome == ["waited"]
    assert report.copied and count(new, "customer.customers") == 25
    with psycopg.connect(conninfo(new)) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM customer.customers")}
    assert "held" in names and "Stray" not in names and "late" not in names
    target.dispose()
    _dispose(app)


def test_a_merge_that_stops_leaves_the_split_deployment_as_it_was(databases, tmp_path, monkeypatch):
    old, new = databases
    seeded = populate(single(old, tmp_path))
    assert backoffice(single(old, tmp_path), "db", "split", "--to-primary", new).returncode == 0
    after_split = split_env(new, old, tmp_path)
    app = create_app(after_split)
    engines = app.extensions["backoffice"].engines
    monkeypatch.setattr(move, "LOCK_TIMEOUT", "300ms")
    writer = psycopg.connect(conninfo(new))  # holds a customer row on the primary
    writer.execute(
        "UPDATE customer.customers SET name = 'held' WHERE id = %s", [seeded["customers"][0]]
    )
    with pytest.raises(move.MoveRefused, match="could not close"):
        move.move(
            engines.primary,
            engines.data,
            direction="merge",
            drop_old=False,
            source_name="primary",
            target_name="data",
        )
    writer.rollback()
    writer.close()
    _dispose(app)
    with psycopg.connect(conninfo(old)) as conn:
        roles = conn.execute("SELECT engine FROM public.backoffice_engine_roles").fetchall()
    assert roles == [("data",)], "the data database is not recorded as the primary"
    check_app(after_split, seeded)
    merged = backoffice(after_split, "db", "merge")
    assert merged.returncode == 0, merged.stderr
    check_app(single(old, tmp_path), seeded)
