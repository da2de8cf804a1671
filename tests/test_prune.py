"""Retention: `backoffice prune` and the workers' hourly run delete what is past its time, and
nothing else; the pages of what stays still work."""

from __future__ import annotations

import json
import secrets
import threading

import pytest
from sqlalchemy import text

from app import create_app
from app.audit import Actor
from app.config import Settings
from app.errors import ConfigError
from app.retention import LOCK_KEY, prune, prune_if_due
from tests.bulk import run_export, run_import, run_transform, wait_for
from tests.conftest import _dispose, create_user, login
from tests.harness import WorkerProcess, backoffice

OLD = "now() - interval '400 days'"  # past every retention
RECENT = "now() - interval '1 day'"  # within every retention but the export files'


@pytest.fixture(scope="module")
def bulk_env(committed_env, tmp_path_factory):
    return {**committed_env, "EXPORT_DIR": str(tmp_path_factory.mktemp("exports"))}


def run_sql(bo, role: str, statement: str, **params):
    with bo.engines.begin(role) as conn:
        return conn.execute(text(statement), params)


def exists(bo, role: str, table: str, key: str, value) -> bool:
    query = f"SELECT 1 FROM {table} WHERE {key} = :v"
    with bo.engines.connect(role) as conn:
        return conn.execute(text(query), {"v": value}).first() is not None


def audit_rows(bo) -> list:
    with bo.engines.connect("primary") as conn:
        return conn.execute(
            text(
                "SELECT actor_email, details FROM config.audit_log "
                "WHERE action = 'retention.prune' ORDER BY id"
            )
        ).all()


def add_session(bo, user_id: int, *, ended: str | None, expires: str) -> int:
    return run_sql(
        bo,
        "primary",
        "INSERT INTO config.sessions (token_hash, user_id, expires_at, ended_at) "
        f"VALUES (:h, :u, {expires}, {ended or 'NULL'}) RETURNING id",
        h=secrets.token_hex(16),
        u=user_id,
    ).scalar_one()


def add_token(bo, user_id: int, *, revoked: str | None, expires: str | None) -> int:
    return run_sql(
        bo,
        "primary",
        "INSERT INTO config.api_tokens (token_hash, user_id, name, role, revoked_at, expires_at) "
        f"VALUES (:h, :u, 'cron', 'viewer', {revoked or 'NULL'}, {expires or 'NULL'}) "
        "RETURNING id",
        h=secrets.token_hex(16),
        u=user_id,
    ).scalar_one()


def add_throttle(bo, key: str, *, window: str, locked: str | None = None) -> str:
    run_sql(
        bo,
        "primary",
        "INSERT INTO config.login_throttle (key, failures, window_started_at, locked_until) "
        f"VALUES (:k, 3, {window}, {locked or 'NULL'})",
        k=key,
    )
    return key


def seed_primary(bo) -> tuple[dict[str, list], dict[str, list]]:
    """Rows past their retention (`old`) and rows within it (`kept`), per table."""
    user = create_user(bo.session_factory)
    uid, tag = user.id, secrets.token_hex(4)
    old = {
        "config.sessions": [
            add_session(bo, uid, ended=OLD, expires="now() + interval '1 hour'"),
            add_session(bo, uid, ended=None, expires=OLD),  # never ended, long expired
        ],
        "config.api_tokens": [
            add_token(bo, uid, revoked=OLD, expires=None),
            add_token(bo, uid, revoked=None, expires=OLD),
        ],
        "config.login_throttle": [add_throttle(bo, f"client:old-{tag}", window=OLD)],
    }
    kept = {
        "config.sessions": [
            add_session(bo, uid, ended=RECENT, expires=RECENT),  # within the grace period
            add_session(bo, uid, ended=None, expires="now() + interval '1 hour'"),  # open
        ],
        "config.api_tokens": [
            add_token(bo, uid, revoked=RECENT, expires=None),
            add_token(bo, uid, revoked=None, expires=None),
        ],
        "config.login_throttle": [
            add_throttle(bo, f"client:recent-{tag}", window=RECENT),
            # An old window whose lock ended only lately: kept until the lock is old too.
            add_throttle(bo, f"client:locked-{tag}", window=OLD, locked=RECENT),
        ],
    }
    return old, kept


def test_settings_have_defaults_and_refuse_nonsense():
    s = Settings.from_env({})
    assert (s.prune_sessions_days, s.prune_jobs_days, s.prune_export_files_days) == (30, 90, 7)
    assert s.prune_interval_seconds == 3600
    assert Settings.from_env({"PRUNE_INTERVAL_SECONDS": "0"}).prune_interval_seconds == 0
    for name in ("PRUNE_SESSIONS_DAYS", "PRUNE_JOBS_DAYS", "PRUNE_EXPORT_FILES_DAYS"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: "0"})
    with pytest.raises(ConfigError, match="PRUNE_JOBS_DAYS must be a whole number"):
        Settings.from_env({"PRUNE_JOBS_DAYS": "ninety"})


def test_prune_deletes_old_sessions_tokens_and_throttle_rows_and_keeps_recent_ones(bo):
    prune(bo, actor=None)  # what earlier tests left
    old, kept = seed_primary(bo)
    audited = len(audit_rows(bo))

    dry = prune(bo, actor=Actor(None, "tests"), dry_run=True)
    assert (dry["sessions"], dry["api_tokens"], dry["login_throttle"]) == (2, 2, 1)
    assert all(
        exists(bo, "primary", t, "id" if "throttle" not in t else "key", v)
        for t, values in old.items()
        for v in values
    ), "a dry run deletes nothing"
    assert len(audit_rows(bo)) == audited, "a dry run is not audited"

    done = prune(bo, actor=Actor(None, "tests"))
    assert done == dry, "the dry run counted what the prune deleted"
    for table, values in old.items():
        key = "key" if "throttle" in table else "id"
        assert not any(exists(bo, "primary", table, key, v) for v in values), table
    for table, values in kept.items():
        key = "key" if "throttle" in table else "id"
        assert all(exists(bo, "primary", table, key, v) for v in values), table
    ((actor, details),) = audit_rows(bo)[audited:]
    assert actor == "tests" and details["deleted"] == done
    assert details["retention_days"] == {
        "sessions": 30,
        "jobs": 90,
        "export_files": 7,
        "transform_history": 90,
    }


def test_a_backlog_goes_in_batches_and_all_of_it_goes(bo):
    prune(bo, actor=None)
    user = create_user(bo.session_factory)
    ids = [add_session(bo, user.id, ended=OLD, expires=OLD) for _ in range(7)]
    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.startswith("DELETE FROM config.sessions"):
            statements.append(statement)

    from sqlalchemy import event

    event.listen(bo.engines.primary, "before_cursor_execute", count)
    try:
        assert prune(bo, actor=None, batch_size=3)["sessions"] == 7
    finally:
        event.remove(bo.engines.primary, "before_cursor_execute", count)
    assert len(statements) == 3, "3 + 3 + 1"
    assert not any(exists(bo, "primary", "config.sessions", "id", i) for i in ids)


def data_work(bo, customer) -> dict:
    """An import, a transform that rejects a row, and an API export (its file in EXPORT_DIR)."""
    import_id = run_import(bo, customer, "sku,name,unit_price,currency\nA,a,1,EUR\nB,b,x,EUR\n")
    transform, _ = run_transform(bo, import_id)
    assert transform.as_dict()["rejected"] == 1
    export, outcome = run_export(bo, customer, "products")
    assert outcome.status == "succeeded"
    with bo.session_factory() as session:
        from app.imports import service as imports

        import_job = imports.get_import(session, import_id).job_id
    return {
        "import": import_id,
        "transform": transform.id,
        "export": export.id,
        "file": bo.settings.export_dir + "/" + export.file_name,
        "jobs": [import_job, transform.job_id, export.job_id],
    }


def age(bo, work: dict, when: str) -> None:
    """Make a piece of work look as if it was done `when`."""
    run_sql(
        bo,
        "data",
        f"UPDATE workspace.jobs SET finished_at = {when} WHERE id = ANY(:i)",
        i=work["jobs"],
    )
    run_sql(
        bo,
        "data",
        f"UPDATE workspace.transforms SET finished_at = {when} WHERE id = :i",
        i=work["transform"],
    )
    run_sql(
        bo,
        "data",
        f"UPDATE workspace.exports SET finished_at = {when} WHERE id = :i",
        i=work["export"],
    )


def test_old_jobs_errors_and_export_files_go_and_their_records_still_show(bo, bulk_app, customer):
    from pathlib import Path

    prune(bo, actor=None)
    old, recent, fresh = (data_work(bo, customer) for _ in range(3))
    age(bo, old, OLD)
    age(bo, recent, "now() - interval '10 days'")  # past the files' 7 days only

    dry = prune(bo, actor=Actor(None, "tests"), dry_run=True)
    assert (dry["jobs"], dry["transform_errors"], dry["export_files"]) == (3, 1, 2)
    assert Path(old["file"]).exists() and exists(bo, "data", "workspace.jobs", "id", old["jobs"][0])

    done = prune(bo, actor=Actor(None, "tests"))
    assert done == dry
    assert not any(exists(bo, "data", "workspace.jobs", "id", j) for j in old["jobs"])
    assert all(
        exists(bo, "data", "workspace.jobs", "id", j) for j in recent["jobs"] + fresh["jobs"]
    )
    assert not Path(old["file"]).exists() and not Path(recent["file"]).exists()
    assert Path(fresh["file"]).exists()

    client = bulk_app.test_client()
    login(client, create_user(bo.session_factory, "operator").email)
    # The import, transform and export that lost their job still say how they ended.
    got = client.get(f"/api/imports/{old['import']}").json
    assert got["import"]["status"] == "staged" and got["import"]["job_id"] is None
    shown = client.get(f"/api/transforms/{old['transform']}").json["transform"]
    assert (shown["status"], shown["rejected"], shown["job_id"]) == ("succeeded", 1, None)
    for page in (f"/imports/{old['import']}", f"/transforms/{old['transform']}"):
        assert client.get(page).status_code == 200, page
    # Its rejected rows are gone; a recent transform's stay.
    errors = client.get(f"/api/imports/{old['import']}/errors").json
    assert errors["total"] == 0
    assert client.get(f"/api/imports/{recent['import']}/errors").json["total"] == 1
    # An export whose file went: its page says so; its download is gone, with why.
    page = client.get(f"/exports/{recent['export']}").get_data(as_text=True)
    assert "No file to download here" in page and ">Download<" not in page
    gone = client.get(f"/api/exports/{recent['export']}/download")
    assert gone.status_code == 410 and gone.json["error"]["code"] == "file_removed"
    assert client.get(f"/api/exports/{fresh['export']}/download").status_code == 200


def test_the_command_prints_counts_and_a_dry_run_changes_nothing(bo, bulk_env):
    prune(bo, actor=None)
    old, _ = seed_primary(bo)
    before = len(audit_rows(bo))

    dry = backoffice(bulk_env, "prune", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    counted = json.loads(dry.stdout)
    assert counted["dry_run"] is True and counted["counts"]["sessions"] == 2
    assert all(exists(bo, "primary", "config.sessions", "id", i) for i in old["config.sessions"])
    assert len(audit_rows(bo)) == before

    done = backoffice(bulk_env, "prune")
    assert done.returncode == 0, done.stderr
    assert "sessions: 2 deleted" in done.stdout.splitlines()
    assert "API tokens: 2 deleted" in done.stdout.splitlines()
    assert not any(
        exists(bo, "primary", "config.sessions", "id", i) for i in old["config.sessions"]
    )
    actor, details = audit_rows(bo)[-1]
    assert actor.startswith("cli:") and details["deleted"] == counted["counts"]


@pytest.fixture
def lone_bo(migrated_env):
    """A backoffice on databases of the test's own: no prune recorded there yet."""
    application = create_app(migrated_env)
    yield application.extensions["backoffice"]
    _dispose(application)


def test_workers_racing_for_the_hourly_prune_do_it_once(lone_bo):
    bo = lone_bo
    user = create_user(bo.session_factory)
    sessions = [add_session(bo, user.id, ended=OLD, expires=OLD) for _ in range(20)]
    start = threading.Barrier(4)
    results: list = []

    def worker(n: int) -> None:
        start.wait()
        results.append(prune_if_due(bo, Actor(None, f"worker:{n}")))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0]["sessions"] == 20, results
    assert len(audit_rows(bo)) == 1
    assert not any(exists(bo, "primary", "config.sessions", "id", i) for i in sessions)
    # Due again only after PRUNE_INTERVAL_SECONDS.
    add_session(bo, user.id, ended=OLD, expires=OLD)
    assert prune_if_due(bo, Actor(None, "worker:late")) is None


def test_a_worker_that_does_not_get_the_lock_skips(lone_bo):
    bo = lone_bo
    user = create_user(bo.session_factory)
    session_id = add_session(bo, user.id, ended=OLD, expires=OLD)
    with bo.engines.connect("data") as other, other.begin():  # another host, pruning
        other.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": LOCK_KEY})
        assert prune_if_due(bo, Actor(None, "worker:1")) is None
        assert exists(bo, "primary", "config.sessions", "id", session_id)
    assert prune_if_due(bo, Actor(None, "worker:1"))["sessions"] == 1
    assert not exists(bo, "primary", "config.sessions", "id", session_id)


def test_a_running_worker_prunes_and_records_it(lone_bo, migrated_env):
    bo = lone_bo
    user = create_user(bo.session_factory)
    session_id = add_session(bo, user.id, ended=OLD, expires=OLD)
    worker = WorkerProcess(migrated_env)
    try:
        gone = wait_for(lambda: not exists(bo, "primary", "config.sessions", "id", session_id), 30)
        assert gone, worker.stop()
        rows = wait_for(lambda: audit_rows(bo), 5)
    finally:
        log = worker.stop()
    ((actor, details),) = rows
    assert actor.startswith("worker:") and details["deleted"]["sessions"] == 1, log


def test_workers_do_not_prune_when_the_interval_is_zero(migrated_env):
    application = create_app({**migrated_env, "PRUNE_INTERVAL_SECONDS": "0"})
    bo = application.extensions["backoffice"]
    try:
        user = create_user(bo.session_factory)
        session_id = add_session(bo, user.id, ended=OLD, expires=OLD)
        assert prune_if_due(bo, Actor(None, "worker:1")) is None
        assert exists(bo, "primary", "config.sessions", "id", session_id)
    finally:
        _dispose(application)
