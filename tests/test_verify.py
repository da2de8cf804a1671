"""`backoffice verify` as an operator runs it after a deployment: a real process on real
databases, every step printed, nothing left behind; the worker that took the import named; a
failure that names the engine and still cleans up."""

import json
import re
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

from tests.harness import WorkerProcess, backoffice

STEP = re.compile(r"^(ok|FAIL) +\d+\.\d\d s  (.+)$")
# What the run makes, on the engine that holds it: none of it may stay.
LEFT_BEHIND = {
    "primary": {
        "users": "SELECT count(*) FROM config.users",
        "customers": "SELECT count(*) FROM customer.customers",
        "open sessions": "SELECT count(*) FROM config.sessions",
    },
    "data": {
        "jobs": "SELECT count(*) FROM workspace.jobs",
        "imports": "SELECT count(*) FROM workspace.imports",
        "stored files": "SELECT count(*) FROM workspace.import_files",
        "transforms": "SELECT count(*) FROM workspace.transforms",
        "exports": "SELECT count(*) FROM workspace.exports",
        "products": "SELECT count(*) FROM reference.products",
        "staged tables": "SELECT count(*) FROM pg_tables WHERE schemaname = 'workspace' "
        "AND tablename ~ '^(import|transform)_[0-9]'",
    },
}


def counts(env) -> dict[str, int]:
    found = {}
    for role, queries in LEFT_BEHIND.items():
        url = env.get(f"{role.upper()}_DATABASE_URL") or env["PRIMARY_DATABASE_URL"]
        plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(plain) as conn:
            for name, query in queries.items():
                found[name] = conn.execute(query).fetchone()[0]
    return found


def steps(stdout: str) -> list[tuple[str, str]]:
    return [m.groups() for line in stdout.splitlines() if (m := STEP.match(line))]


def export_files(env) -> list[Path]:
    folder = Path(env.get("EXPORT_DIR") or Path(env["INSTANCE_PATH"]) / "exports")
    return sorted(folder.glob("*")) if folder.is_dir() else []


NOTHING = {name: 0 for queries in LEFT_BEHIND.values() for name in queries}


def test_verify_runs_every_step_and_leaves_nothing_behind(migrated_env):
    result = backoffice(migrated_env, "verify", "--worker-wait", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    found = steps(result.stdout)
    assert [status for status, _ in found] == ["ok"] * len(found), result.stdout
    labels = [label for _, label in found]
    assert labels[:2] == ["primary reachable and migrated", "data reachable and migrated"]
    expected = [
        r"change notice reached a second connection in \d+ ms \(LISTEN on PRIMARY_DATABASE_URL\)",
        r"scratch user signed in through the API",
        r"session validated twice, the second from the 30-second cache; ended by logout",
        r"scratch customer VERIFY-[0-9A-F]{8} created",
        r"import \d+: 3 rows staged here \(no worker took it within 1 s\)",
        r"transform \d+: 3 rows into reference.products",
        r"export \d+: 3 rows written to EXPORT_DIR and read back",
        r"scratch customer's imports, transforms and exports removed",
        r"scratch customer deleted",
        r"scratch user deleted",
    ]
    assert len(labels) == 2 + len(expected), result.stdout
    for pattern, label in zip(expected, labels[2:], strict=True):
        assert re.fullmatch(pattern, label), (pattern, label)
    assert re.search(r"^verified in \d+\.\d s$", result.stdout, re.M)
    assert counts(migrated_env) == NOTHING
    assert export_files(migrated_env) == []


def test_verify_keep_leaves_the_scratch_customer_and_its_data(migrated_env):
    result = backoffice(migrated_env, "verify", "--keep", "--worker-wait", "0", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["failed"] is None
    assert all(step["ok"] for step in report["steps"])
    assert report["left_behind"]["customer"].startswith("VERIFY-")
    assert set(report["left_behind"]) == {"customer", "import", "transform", "export"}
    left = counts(migrated_env)
    assert left["customers"] == 1 and left["imports"] == 1 and left["products"] == 3
    assert left["users"] == 0, "the scratch user goes, --keep or not"
    assert len(export_files(migrated_env)) == 1


def test_verify_names_the_worker_that_took_the_import(migrated_env):
    worker = WorkerProcess(migrated_env)
    try:
        result = backoffice(migrated_env, "verify", "--worker-wait", "60")
    finally:
        log = worker.stop()
    assert result.returncode == 0, result.stdout + result.stderr + log
    staged = [label for _, label in steps(result.stdout) if label.startswith("import ")]
    assert len(staged) == 1
    assert re.fullmatch(rf"import \d+: 3 rows staged by worker \S+:{worker.pid}:\d+", staged[0])
    assert counts(migrated_env) == NOTHING


def test_verify_stops_at_a_data_engine_behind_and_names_it(make_env):
    env = make_env("verify")
    assert backoffice(env, "db", "upgrade", "primary").returncode == 0
    result = backoffice(env, "verify", "--worker-wait", "0")
    assert result.returncode == 1
    found = steps(result.stdout)
    assert found[0] == ("ok", "primary reachable and migrated")
    assert found[1] == (
        "FAIL",
        "data reachable and migrated: data engine: migrations empty: "
        "run `backoffice db upgrade data`",
    )
    assert len(found) == 2, "the first failure stops the run; it had made nothing to remove"
    assert "verify failed: data reachable and migrated (data engine)" in result.stderr


def test_a_failed_export_is_reported_on_the_data_engine_and_cleaned_up(migrated_env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    env = {**migrated_env, "EXPORT_DIR": str(blocker / "exports")}
    result = backoffice(env, "verify", "--worker-wait", "0")
    assert result.returncode == 1, result.stdout
    found = steps(result.stdout)
    failed = [label for status, label in found if status == "FAIL"]
    assert len(failed) == 1 and failed[0].startswith("export: data engine: job "), result.stdout
    assert [label for _, label in found][-3:] == [
        "scratch customer's imports, transforms and exports removed",
        "scratch customer deleted",
        "scratch user deleted",
    ]
    assert "verify failed: export (data engine)" in result.stderr
    assert "left behind" not in result.stdout
    assert counts(env) == NOTHING


def test_an_engine_out_of_reach_is_named(migrated_env, split):
    """Split: the data database gone; single: the one database, reported as the primary."""
    broken = "data" if split else "primary"
    variable = f"{broken.upper()}_DATABASE_URL"
    env = {**migrated_env, variable: migrated_env[variable].rsplit("/", 1)[0] + "/no_such_db"}
    result = backoffice(env, "verify", "--worker-wait", "0")
    assert result.returncode == 1, result.stdout + result.stderr
    failed = [label for status, label in steps(result.stdout) if status == "FAIL"]
    assert len(failed) == 1, result.stdout
    assert failed[0].startswith(f"{broken} reachable and migrated: {broken} engine: unreachable")
    assert "no_such_db" in failed[0]
    assert f"verify failed: {broken} reachable and migrated ({broken} engine)" in result.stderr
