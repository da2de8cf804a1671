"""The primary behind a real PgBouncer in transaction mode, with a pool smaller than the app's
demand: migrations, gunicorn workers, a job worker and the session listener all work."""

import subprocess
import threading
import time
import uuid

import pytest
from sqlalchemy import text

from app import create_app
from app.db.schemas import PRIMARY
from tests.conftest import PASSWORD, READY_DETAILS, create_user
from tests.harness import (
    BACKOFFICE,
    ROOT,
    Connection,
    Gunicorn,
    PgBouncer,
    WorkerProcess,
    backoffice,
    environment,
    find_pgbouncer,
    login,
)

POOL = 3  # server connections PgBouncer may open to the primary's database
CLIENTS = 8  # concurrent HTTP clients, each logged in as its own user
ROUNDS = 15


@pytest.fixture(scope="module")
def bouncer(pg_servers, tmp_path_factory):
    binary, reason = find_pgbouncer()
    if binary is None:
        print(f"\nPgBouncer tests skipped: {reason}")
        pytest.skip(reason)
    pgbouncer = PgBouncer(
        binary, tmp_path_factory.mktemp("pgbouncer"), pg_servers[PRIMARY].url, pool_size=POOL
    )
    yield pgbouncer
    pgbouncer.stop()


@pytest.fixture(scope="module")
def env(make_env, bouncer):
    """The primary through PgBouncer (`?pgbouncer=true`), the listener on a direct URL."""
    env = make_env("bouncer")
    direct = env["PRIMARY_DATABASE_URL"]
    env["PRIMARY_DATABASE_URL"] = bouncer.url(direct)
    env["AUTH_LISTEN_URL"] = direct
    return env


def our_pool(bouncer, env) -> dict:
    database = env["PRIMARY_DATABASE_URL"].rsplit("/", 1)[1].split("?")[0]
    return next(p for p in bouncer.show("POOLS") if p["database"] == database)


@pytest.fixture(scope="module")
def migrated(env):
    # Two at once: the second waits on the first's transaction-level lock, then finds
    # nothing to do (a session-level lock would not survive PgBouncer's transaction mode).
    runs = [
        subprocess.Popen(
            [BACKOFFICE, "db", "upgrade"],
            cwd=ROOT,
            env=environment(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for run in runs:
        out, err = run.communicate(timeout=180)
        assert run.returncode == 0, out + err
    return env


def test_migrations_run_through_pgbouncer(migrated, bouncer):
    check = backoffice(migrated, "db", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    status = backoffice(migrated, "db", "status")
    assert status.returncode == 0 and "prepared statement" not in status.stderr
    assert int(our_pool(bouncer, migrated)["sv_active"]) <= POOL


@pytest.fixture(scope="module")
def server(migrated):
    gunicorn = Gunicorn(migrated, workers=4)
    worker = WorkerProcess(migrated, concurrency=2)
    yield gunicorn
    worker.stop()
    gunicorn.stop()


@pytest.fixture(scope="module")
def factory(migrated):
    application = create_app(migrated)
    yield application.extensions["backoffice"].session_factory
    application.extensions["backoffice"].close()


def test_concurrent_transactions_on_the_pooled_engine(factory, bouncer, migrated):
    """More client connections than server connections, each running the same statements
    many times: psycopg would prepare them after five runs, and a prepared statement lives on
    one server connection, which PgBouncer hands to another client at the next transaction."""
    errors: list[str] = []

    def run(k: int) -> None:
        for i in range(30):
            try:
                with factory() as session:
                    conn = session.connection_for(PRIMARY)
                    # Each thread its own text: run under another's name, it answers wrong.
                    got = conn.execute(text(f"SELECT CAST(:x AS int) * {k}"), {"x": i})
                    time.sleep(0.002)  # hold the server connection while others queue
                    total = conn.execute(text("SELECT count(*) FROM config.users")).scalar()
                    if got.scalar() != i * k or total < 0:
                        errors.append(f"wrong answer in thread {k}")
                    session.commit()  # psycopg forgets what it prepared in a rolled-back one
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0]}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]


def test_concurrent_authenticated_traffic_through_a_small_pool(server, factory, bouncer, migrated):
    admin = create_user(factory, "admin")
    customer = Connection(server.port).request(
        "POST",
        "/api/customers",
        body={"code": f"bnc{uuid.uuid4().hex[:6]}", "name": "Bouncer"},
        headers=login(Connection(server.port), admin.email, PASSWORD),
    )
    assert customer.status == 201, customer.body
    customer_id = customer.body["customer"]["id"]
    users = [create_user(factory, "operator") for _ in range(CLIENTS)]
    before = {s["database"]: int(s["total_xact_count"]) for s in bouncer.show("STATS")}
    failures: list[str] = []
    jobs: list[int] = []
    peak_servers = [0]

    def client(user) -> None:
        conn = Connection(server.port)
        try:
            headers = login(conn, user.email, PASSWORD)
            for n in range(ROUNDS):
                me = conn.request("GET", "/api/auth/me", headers=headers)
                if me.status != 200 or me.body["user"]["email"] != user.email:
                    failures.append(f"me: {me.status} {me.body}")
                made = conn.request(
                    "POST",
                    "/api/customers",
                    body={"code": f"c{uuid.uuid4().hex[:10]}", "name": f"Customer {n}"},
                    headers=headers,
                )
                if made.status != 201:
                    failures.append(f"create: {made.status} {made.body}")
                listed = conn.request("GET", "/api/customers?limit=5", headers=headers)
                if listed.status != 200:
                    failures.append(f"list: {listed.status} {listed.body}")
                if n % 5 == 0:
                    reply = conn.upload(headers, customer_id, csv=f"sku,n\nx{n},{n}\ny{n},1\n")
                    if reply.status != 202:
                        failures.append(f"import: {reply.status} {reply.body}")
                    else:
                        jobs.append(reply.body["job"]["id"])
            conn.request("POST", "/api/auth/logout", headers=headers)
        except Exception as exc:  # reported below, with the others
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()

    def watch(stop: threading.Event) -> None:
        while not stop.is_set():
            pool = our_pool(bouncer, migrated)
            servers = sum(int(pool[k]) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested"))
            peak_servers[0] = max(peak_servers[0], servers)
            time.sleep(0.05)

    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(stop,))
    watcher.start()
    threads = [threading.Thread(target=client, args=(u,)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    stop.set()
    watcher.join()

    assert not failures, failures[:5]
    database = our_pool(bouncer, migrated)["database"]
    after = {s["database"]: int(s["total_xact_count"]) for s in bouncer.show("STATS")}
    # Every request went through PgBouncer, on at most POOL server connections.
    assert after[database] - before.get(database, 0) >= CLIENTS * ROUNDS * 3
    assert 0 < peak_servers[0] <= POOL
    assert "prepared statement" not in bouncer.log()

    # The job worker, which also reads the primary through PgBouncer, ran every import.
    admin_headers = login(Connection(server.port), admin.email, PASSWORD)
    conn = Connection(server.port)
    deadline = time.monotonic() + 60
    pending = set(jobs)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            job = conn.request("GET", f"/api/jobs/{job_id}", headers=admin_headers).body["job"]
            assert job["status"] not in ("failed", "cancelled"), job
            if job["status"] == "succeeded":
                pending.discard(job_id)
        time.sleep(0.2)
    assert len(jobs) == CLIENTS * len(range(0, ROUNDS, 5)) and not pending


def test_sessions_end_in_every_worker_through_the_direct_listener(server, factory):
    workers = server.pinned_connections()
    try:
        admin = login(workers[0], create_user(factory, "admin").email, PASSWORD)
        victim = create_user(factory, "operator")
        headers = login(workers[0], victim.email, PASSWORD)
        for conn in workers:
            assert conn.request("GET", "/api/auth/me", headers=headers).status == 200
            cache = conn.request("GET", "/health/ready", headers=READY_DETAILS).body[
                "session_cache"
            ]
            assert cache["listener"] == "listening" and cache["trusted"], cache
        reply = workers[-1].request(
            "PATCH", f"/api/users/{victim.id}", body={"is_active": False}, headers=admin
        )
        assert reply.status == 200, reply.body
        deadline = time.monotonic() + 1.0
        pending = list(workers)
        while pending and time.monotonic() < deadline:
            pending = [
                c
                for c in pending
                if c.request("GET", "/api/auth/me", headers=headers).status == 200
            ]
        assert not pending, f"workers {[c.pid for c in pending]} still accept the session"
    finally:
        for conn in workers:
            conn.close()
