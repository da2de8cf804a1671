"""`backoffice db roles`: the owner migrates, the runtime role runs the app, the workers and the
bulk work, and is refused DDL outside `workspace`, changes to the audit log, and the other
engine's schemas."""

from __future__ import annotations

import json
import re
import time
import uuid

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from app import create_app
from app.db.schemas import DATA, PRIMARY, SCHEMA_ENGINE, schemas_of
from tests.conftest import READY_DETAILS
from tests.harness import WorkerProcess, backoffice

PASSWORD_LINE = re.compile(r"^  (\w+): (\S+)$", re.M)
URL_KEYS = {PRIMARY: "PRIMARY_DATABASE_URL", DATA: "DATA_DATABASE_URL"}


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def urls(env: dict[str, str]) -> dict[str, str]:
    """The engines' URLs of an environment (single mode: the one database, as `primary`)."""
    return {role: env[key] for role, key in URL_KEYS.items() if key in env}


def as_role(env: dict[str, str], name: str, password: str) -> dict[str, str]:
    """The same databases, reached as another role."""
    out = dict(env)
    for role, url in urls(env).items():
        out[URL_KEYS[role]] = (
            make_url(url).set(username=name, password=password).render_as_string(False)
        )
    return out


def refused(url: str, statement: str) -> bool:
    """Whether the role of `url` lacks the privilege for `statement` (nothing is kept)."""
    with psycopg.connect(libpq(url)) as conn:
        try:
            conn.execute(statement)
        except psycopg.errors.InsufficientPrivilege:
            return True
        finally:
            conn.rollback()
    return False


def query(url: str, statement: str, *args) -> list[tuple]:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        return conn.execute(statement, args).fetchall()


def schemas_in(url: str) -> set[str]:
    return {row[0] for row in query(url, "SELECT nspname FROM pg_namespace")} & set(SCHEMA_ENGINE)


@pytest.fixture
def setup(make_env, pg_servers):
    """Empty databases (reached as the servers' superuser) and two role names of the test's
    own; the roles and what they own are dropped afterwards."""
    admin = make_env("roles")
    suffix = uuid.uuid4().hex[:8]
    names = (f"bo_owner_{suffix}", f"bo_app_{suffix}")
    yield admin, *names
    for url in urls(admin).values():
        with psycopg.connect(libpq(url), autocommit=True) as conn:
            present = [
                r[0]
                for r in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (list(names),)
                )
            ]
            for name in sorted(present):  # one at a time: the runtime's first
                conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    for server in pg_servers.values():
        with server._admin() as conn:
            for name in names:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def make_roles(env, owner, runtime, *more, **options) -> dict[str, str]:
    made = backoffice(env, "db", "roles", "--owner", owner, "--runtime", runtime, *more, **options)
    assert made.returncode == 0, made.stderr
    return dict(PASSWORD_LINE.findall(made.stdout))


def test_print_sql_prints_a_script_per_engine_and_runs_nothing(setup, split):
    admin, owner, runtime = setup
    printed = backoffice(
        admin, "db", "roles", "--owner", owner, "--runtime", runtime, "--print-sql"
    )
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.count("BEGIN;") == (2 if split else 1)
    assert f'CREATE ROLE "{runtime}" LOGIN PASSWORD \'SCRAM-SHA-256$' in printed.stdout
    assert f'GRANT CREATE ON SCHEMA workspace TO "{runtime}"' in printed.stdout
    passwords = dict(PASSWORD_LINE.findall(printed.stderr))
    assert set(passwords) == {owner, runtime}
    assert not any(p in printed.stdout for p in passwords.values()), "only verifiers in the SQL"
    for url in urls(admin).values():
        assert query(url, "SELECT 1 FROM pg_roles WHERE rolname = %s", runtime) == []
        assert schemas_in(url) == set(), "nothing ran"


def test_the_runtime_role_runs_everything_and_is_refused_ddl_and_audit_changes(
    setup, split, tmp_path
):
    admin, owner, runtime = setup
    passwords = make_roles(admin, owner, runtime)
    assert set(passwords) == {owner, runtime}
    again = backoffice(admin, "db", "roles", "--owner", owner, "--runtime", runtime)
    assert again.returncode == 0, again.stderr
    assert "created: none (both existed)" in again.stdout and "Passwords" not in again.stdout
    for url in urls(admin).values():
        (attributes,) = query(
            url,
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
            "rolcanlogin FROM pg_roles WHERE rolname = %s",
            runtime,
        )
        assert attributes == (False, False, False, False, False, True)

    owner_env = as_role(admin, owner, passwords[owner])
    migrated = backoffice(owner_env, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    assert backoffice(owner_env, "db", "check").returncode == 0
    for role, url in urls(admin).items():
        own = set(schemas_of(role)) if split else set(SCHEMA_ENGINE)
        assert schemas_in(url) == own, "each database has its engine's schemas only"
        owners = query(
            url,
            "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = ANY(%s)",
            list(own),
        )
        assert owners == [(owner,)], "the migrations' tables are the owner's"

    env = as_role(admin, runtime, passwords[runtime])
    assert backoffice(env, "db", "check").returncode == 0, "the runtime role reads versions"
    made = backoffice(
        env,
        "users",
        "create",
        "--role",
        "admin",
        "--email",
        "ops@example.com",
        "--name",
        "Ops",
        "--password-stdin",
        input="runtime role password\n",
    )
    assert made.returncode == 0, made.stderr
    assert backoffice(env, "customers", "create", "--code", "RT", "--name", "R").returncode == 0
    source = tmp_path / "products.csv"
    source.write_text("sku,name,unit_price,currency\nA1,Hammer,12.90,EUR\nB2,Saw,3.50,EUR\n")

    staged = backoffice(env, "import", str(source), "--customer", "RT", "--json")
    assert staged.returncode == 0, staged.stderr + staged.stdout
    import_id = str(json.loads(staged.stdout)["import"]["id"])
    preview = backoffice(env, "transform", import_id, "--dataset", "products", "--dry-run")
    assert preview.returncode == 0, preview.stderr
    cast = backoffice(env, "transform", import_id, "--dataset", "products", "--json")
    assert cast.returncode == 0, cast.stderr + cast.stdout
    assert json.loads(cast.stdout)["transform"]["inserted"] == 2
    out = tmp_path / "out.csv"
    written = backoffice(env, "export", "products", "--customer", "RT", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert out.read_text().count("\n") == 3, "the header and two rows"

    queued = backoffice(env, "import", str(source), "--customer", "RT", "--async", "--json")
    assert queued.returncode == 0, queued.stderr
    job_id = str(json.loads(queued.stdout)["job"]["id"])
    worker = WorkerProcess(env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = json.loads(backoffice(env, "jobs", "show", job_id).stdout)
            if shown["status"] in ("succeeded", "failed"):
                break
            time.sleep(0.2)
    finally:
        log = worker.stop()
    assert shown["status"] == "succeeded", (shown, log)

    purged = backoffice(env, "imports", "purge", "--older-than", "0m")
    assert purged.returncode == 0 and "purged import" in purged.stdout, purged.stderr
    assert backoffice(env, "prune").returncode == 0

    application = create_app(env)
    try:
        client = application.test_client()
        credentials = {"email": "ops@example.com", "password": "runtime role password"}
        login = client.post("/api/auth/login", json=credentials)
        assert login.status_code == 200, login.json
        assert client.get("/health/ready", headers=READY_DETAILS).status_code == 200
    finally:
        application.extensions["backoffice"].close()

    primary, data = urls(env)[PRIMARY], urls(env).get(DATA, urls(env)[PRIMARY])
    assert query(primary, "SELECT count(*) FROM config.audit_log")[0][0] > 0
    for statement in (
        "CREATE TABLE config.x (id int)",
        "ALTER TABLE customer.customers ADD COLUMN x int",
        "CREATE TABLE public.x (id int)",
        "CREATE SCHEMA x",
        "UPDATE config.audit_log SET action = action",
        "DELETE FROM config.audit_log",
        "TRUNCATE config.audit_log",
    ):
        assert refused(primary, statement), statement
    for statement in (
        "DROP TABLE workspace.jobs",
        "ALTER TABLE reference.products ADD COLUMN x int",
        "CREATE INDEX ON reference.products (customer_id)",
    ):
        assert refused(data, statement), statement
    assert not refused(data, "CREATE TABLE workspace.scratch (id int)"), "a job's staging table"


def test_the_runtime_role_works_on_its_engine_s_schemas_and_nothing_else(setup, split):
    admin, owner, runtime = setup
    make_roles(admin, owner, runtime)
    servers = urls(admin)
    if not split:  # one database serves both engines: all four schemas, each open to the role
        assert schemas_in(servers[PRIMARY]) == set(SCHEMA_ENGINE)
        for schema in SCHEMA_ENGINE:
            rights = f"SELECT has_schema_privilege('{runtime}', '{schema}', 'USAGE')"
            assert query(servers[PRIMARY], rights) == [(True,)], schema
        return
    assert schemas_in(servers[PRIMARY]) == set(schemas_of(PRIMARY))
    assert schemas_in(servers[DATA]) == set(schemas_of(DATA))
    # Old copies of the other engine's tables (as `db split` leaves them), once granted too
    # widely: a second run takes the runtime role's rights on them away.
    leftovers = {PRIMARY: "workspace.jobs_old", DATA: "customer.customers_old"}
    for role, table in leftovers.items():
        schema = table.split(".")[0]
        with psycopg.connect(libpq(servers[role]), autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            conn.execute(f"CREATE TABLE {table} (id int)")
            conn.execute(f'GRANT ALL ON SCHEMA {schema} TO "{runtime}"')
            conn.execute(f'GRANT ALL ON {table} TO "{runtime}"')
    passwords = make_roles(admin, owner, runtime, "--password-stdin", input="\nrt-secret-1\n")
    assert passwords == {}, "existing roles keep their passwords unless given"
    env = as_role(admin, runtime, "rt-secret-1")
    for role, table in leftovers.items():
        url = urls(env)[role]
        assert refused(url, f"SELECT * FROM {table}"), table
        assert refused(url, f"CREATE TABLE {table.split('.')[0]}.y (id int)"), table
    assert query(urls(env)[PRIMARY], "SELECT has_schema_privilege('config', 'USAGE')") == [(True,)]
    assert refused(urls(env)[PRIMARY], "CREATE TABLE config.y (id int)")


def test_a_password_given_on_stdin_replaces_the_role_s_own(setup):
    admin, owner, runtime = setup
    generated = make_roles(admin, owner, runtime, "--password-stdin", input="owner-pw-1\n\n")
    assert set(generated) == {runtime}, "a new role without a given password gets one made"
    for url in urls(admin).values():
        assert query(libpq_as(url, owner, "owner-pw-1"), "SELECT current_user") == [(owner,)]
    make_roles(admin, owner, runtime, "--password-stdin", input="\nruntime-pw-2\n")
    for url in urls(admin).values():
        assert query(libpq_as(url, runtime, "runtime-pw-2"), "SELECT 1") == [(1,)]
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            query(libpq_as(url, runtime, generated[runtime]), "SELECT 1")
        assert query(libpq_as(url, owner, "owner-pw-1"), "SELECT 1") == [(1,)], "kept"


def libpq_as(url: str, name: str, password: str) -> str:
    return make_url(url).set(username=name, password=password).render_as_string(False)
