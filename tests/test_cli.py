"""The `backoffice` command as a user runs it: a real process, real databases."""

import hashlib
import json
import re
import subprocess
import sys
from importlib.metadata import version

import pytest
from sqlalchemy import select

from app.db import migrations
from app.models.primary.config import AuditEntry, User
from tests.harness import BACKOFFICE, ROOT, backoffice, environment

HEADS = {role: migrations.script_directory(role).get_current_head() for role in ("primary", "data")}


@pytest.fixture
def env(make_env):
    """Empty databases, not migrated."""
    return make_env("cli")


def test_upgrade_status_and_check_through_the_command(env):
    before = backoffice(env, "db", "check")
    assert before.returncode == 1 and "migrations empty" in before.stdout

    dry = backoffice(env, "db", "upgrade", "--preflight")
    assert dry.returncode == 0, dry.stderr
    assert "primary: PostgreSQL" in dry.stdout and "pending: p0001, " in dry.stdout
    assert "data: PostgreSQL" in dry.stdout and "pending: d0001" in dry.stdout
    status = json.loads(backoffice(env, "db", "status", "--json").stdout)
    assert status["primary"]["state"] == "empty"

    up = backoffice(env, "db", "upgrade", "primary")
    assert up.returncode == 0, up.stderr
    assert f"primary: at {HEADS['primary']} (current)" in up.stdout
    status = json.loads(backoffice(env, "db", "status", "--json").stdout)
    assert status["primary"]["state"] == "current" and status["data"]["state"] == "empty"

    assert backoffice(env, "db", "upgrade").returncode == 0
    check = backoffice(env, "db", "check")
    assert check.returncode == 0 and check.stdout == "primary: ok\ndata: ok\n"


def test_doctor_masks_passwords_and_reports_each_engine(env):
    env = dict(env)
    env["PRIMARY_DATABASE_URL"] = env["PRIMARY_DATABASE_URL"].replace(
        "postgres@", "postgres:hunter2@"
    )
    backoffice(env, "db", "upgrade")
    result = backoffice(env, "doctor", "--json")
    assert result.returncode == 0, result.stderr
    assert "hunter2" not in result.stdout
    report = json.loads(result.stdout)
    assert report["config"]["primary"].count("***") == 1
    assert report["readiness"]["status"] == "ready"


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"SPLIT_DB_MODE": "maybe"}, "SPLIT_DB_MODE must be true or false"),
        (
            {"DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:9/x?timeout=3"},
            "unknown URL parameter(s) timeout",
        ),
        (
            {"DATABASE_URL": "postgresql://u:hunter2@127.0.0.1:9/x"},
            "the primary database (postgresql+psycopg://u:***@127.0.0.1:9/x) is unreachable",
        ),
    ],
)
def test_bad_settings_give_one_clear_line_and_a_non_zero_exit(variables, expected, tmp_path):
    result = backoffice({"INSTANCE_PATH": str(tmp_path), **variables}, "db", "status")
    assert result.returncode != 0
    assert expected in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "hunter2" not in result.stderr


def test_users_commands_manage_the_first_admin_and_others(migrated_env):
    env = migrated_env
    created = backoffice(
        env,
        "users",
        "create",
        "--role",
        "admin",
        "--email",
        "boss@example.com",
        "--name",
        "Boss",
        "--password-stdin",
        "--json",
        input="first admin password\n",
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["role"] == "admin"
    weak = backoffice(
        env,
        "users",
        "create",
        "--email",
        "x@example.com",
        "--name",
        "X",
        "--password-stdin",
        input="short\n",
    )
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr
    assert "Traceback" not in weak.stderr

    listed = json.loads(backoffice(env, "users", "list", "--json").stdout)
    assert [u["email"] for u in listed] == ["boss@example.com"]
    assert backoffice(env, "users", "disable", "boss@example.com").returncode == 0
    assert json.loads(backoffice(env, "users", "list", "--json").stdout)[0]["is_active"] is False
    assert backoffice(env, "users", "enable", "boss@example.com").returncode == 0
    reset = backoffice(
        env,
        "users",
        "reset-password",
        "boss@example.com",
        "--password-stdin",
        input="another long password\n",
    )
    assert reset.returncode == 0, reset.stderr
    assert json.loads(backoffice(env, "users", "list", "--json").stdout)[0]["must_change_password"]
    missing = backoffice(env, "users", "disable", "nobody@example.com")
    assert missing.returncode == 1 and "no user with email nobody@example.com" in missing.stderr
    ended = backoffice(env, "users", "end-sessions", "--all")
    assert ended.returncode == 0
    assert ended.stdout == "ended 0 session(s) and revoked 0 API token(s)\n"
    assert backoffice(env, "users", "end-sessions").returncode == 2, "EMAIL or --all"
    assert backoffice(env, "users", "delete", "boss@example.com", "--yes").returncode == 0
    assert json.loads(backoffice(env, "users", "list", "--json").stdout) == []


@pytest.fixture
def app_on(migrated_env):
    """The app on the command's databases: to make users and tokens, and call it."""
    from app import create_app

    application = create_app(migrated_env)
    yield application
    application.extensions["backoffice"].close()


def test_users_token_commands_list_revoke_and_every_cut_revokes(migrated_env, app_on):
    from app.audit import Actor
    from app.auth.api_tokens import create_api_token

    env = migrated_env
    from app.db.session import session_scope
    from tests.conftest import create_user

    factory = app_on.extensions["backoffice"].session_factory
    user = create_user(factory, "operator", email="ops@example.com")
    create_user(factory, "viewer", email="other@example.com")

    def token(name: str) -> tuple[int, dict[str, str]]:
        with session_scope(factory) as session:
            row, raw = create_api_token(
                session,
                Actor(None, "tests"),
                session.get(User, user.id),
                name=name,
            )
            return row.id, {"Authorization": f"Bearer {raw}"}

    def works(bearer) -> bool:
        return app_on.test_client().get("/api/auth/me", headers=bearer).status_code == 200

    def listed() -> dict[str, str | None]:
        tokens = json.loads(backoffice(env, "users", "tokens", "ops@example.com", "--json").stdout)
        return {t["name"]: t["revoked_at"] for t in tokens}

    nightly, nightly_bearer = token("nightly")
    _weekly, weekly_bearer = token("weekly")
    text = backoffice(env, "users", "tokens", "ops@example.com")
    assert text.returncode == 0 and "nightly" in text.stdout and "active" in text.stdout
    assert listed() == {"nightly": None, "weekly": None}

    stranger = backoffice(env, "users", "revoke-token", "other@example.com", str(nightly))
    assert stranger.returncode == 1
    assert f"other@example.com has no API token {nightly}" in stranger.stderr
    assert works(nightly_bearer)
    revoked = backoffice(env, "users", "revoke-token", "ops@example.com", str(nightly))
    assert revoked.returncode == 0, revoked.stderr
    assert not works(nightly_bearer) and works(weekly_bearer)

    reset = backoffice(
        env,
        "users",
        "reset-password",
        "ops@example.com",
        "--password-stdin",
        input="another long password\n",
    )
    assert reset.returncode == 0 and "API tokens revoked" in reset.stdout
    assert not works(weekly_bearer)
    assert all(listed().values())

    for cut in (
        ("users", "end-sessions", "ops@example.com"),
        ("users", "end-sessions", "--all"),
        ("users", "disable", "ops@example.com"),
    ):
        _id, bearer = token(" ".join(cut))
        assert works(bearer)
        assert backoffice(env, *cut).returncode == 0, cut
        assert not works(bearer), cut
        backoffice(env, "users", "enable", "ops@example.com")
    assert all(listed().values())

    with session_scope(factory) as session:
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.actor_email.like("cli:%"))
        ).all()
    assert {"token.revoke", "token.revoke_all"} <= set(actions)


def test_customers_commands_create_and_list(migrated_env):
    env = migrated_env
    made = backoffice(env, "customers", "create", "--code", "acme", "--name", "Acme", "--json")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["code"] == "ACME"
    again = backoffice(env, "customers", "create", "--code", "ACME", "--name", "Twin")
    assert again.returncode == 1 and "a customer with code ACME exists" in again.stderr
    inactive = backoffice(env, "customers", "create", "--code", "b2", "--name", "B", "--inactive")
    assert inactive.returncode == 0
    listed = json.loads(backoffice(env, "customers", "list", "--status", "active", "--json").stdout)
    assert [c["code"] for c in listed] == ["ACME"]
    assert "B2" in backoffice(env, "customers", "list").stdout


def peak_rss_kb(env, *args) -> tuple[int, subprocess.CompletedProcess]:
    """Run `backoffice ARGS` in a fresh child and return its peak resident memory."""
    probe = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(r.stderr); sys.stdout.write(r.stdout)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.exit(r.returncode)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, BACKOFFICE, *args],
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    *output, peak = result.stdout.strip().splitlines()
    result.stdout = "\n".join(output)
    return int(peak), result


def write_rows(path, n: int) -> None:
    with open(path, "w") as handle:
        handle.write("sku,name,price\n")
        for start in range(0, n, 10_000):
            handle.write(
                "".join(f"S{i},Name {i},{i}.5\n" for i in range(start, min(start + 10_000, n)))
            )


def test_import_command_runs_the_job_here_or_queues_it(migrated_env, tmp_path):
    env = migrated_env
    assert backoffice(env, "customers", "create", "--code", "CLI", "--name", "C").returncode == 0
    path = tmp_path / "rows.csv"
    write_rows(path, 1234)
    done = backoffice(env, "import", str(path), "--customer", "CLI", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["import"]["status"] == "staged" and result["import"]["rows_staged"] == 1234
    assert result["import"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result["import"]["size_bytes"] == path.stat().st_size
    assert result["job"]["status"] == "succeeded"

    queued = json.loads(
        backoffice(env, "import", str(path), "--customer", "CLI", "--async", "--json").stdout
    )
    assert queued["job"]["status"] == "queued" and queued["import"]["status"] == "pending"
    listed = backoffice(env, "jobs", "list", "--status", "queued")
    assert f"{queued['job']['id']:>6}  import" in listed.stdout
    shown = json.loads(backoffice(env, "jobs", "show", str(queued["job"]["id"])).stdout)
    assert shown["params"] == {"import_id": queued["import"]["id"]}, "bytes kept in the database"
    cancelled = backoffice(env, "jobs", "cancel", str(queued["job"]["id"]))
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2,3\n")
    failed = backoffice(env, "import", str(bad), "--customer", "CLI")
    assert failed.returncode == 1
    assert "failed: line 2: more fields than the header's 2" in failed.stdout
    unknown = backoffice(env, "import", str(bad), "--customer", "NOBODY")
    assert unknown.returncode == 1 and "no customer with code NOBODY" in unknown.stderr
    purged = backoffice(env, "imports", "purge", "--older-than", "0m")
    assert purged.returncode == 0 and "purged import" in purged.stdout


def test_a_million_rows_import_in_the_memory_of_a_thousand(migrated_env, tmp_path):
    env = migrated_env
    assert backoffice(env, "customers", "create", "--code", "MEM", "--name", "M").returncode == 0
    small, large = tmp_path / "small.csv", tmp_path / "large.csv"
    write_rows(small, 1_000)
    write_rows(large, 1_000_000)
    small_kb, small_run = peak_rss_kb(env, "import", str(small), "--customer", "MEM", "--json")
    large_kb, large_run = peak_rss_kb(env, "import", str(large), "--customer", "MEM", "--json")
    assert small_run.returncode == 0 and large_run.returncode == 0, large_run.stderr
    assert json.loads(large_run.stdout)["import"]["rows_staged"] == 1_000_000
    print(
        f"peak RSS: 1,000 rows {small_kb / 1024:.1f} MiB, 1,000,000 rows {large_kb / 1024:.1f} MiB"
    )
    # The pipeline holds a few chunks (256 kB each) whatever the file's size: a constant
    # a 1,000-row file never fills. Growth with the file would show far above it.
    assert large_kb - small_kb <= 8 * 1024, "flat: no more than a few chunk buffers apart"


def test_bulk_work_logs_statements_not_rows(migrated_env, tmp_path):
    """LOG_DB_QUERIES=true: an import and a transform log the same whatever the file's size."""
    env = migrated_env
    assert backoffice(env, "customers", "create", "--code", "LOG", "--name", "L").returncode == 0
    loud = {**env, "LOG_DB_QUERIES": "true"}
    lines = {}
    for rows in (10, 20_000):
        path = tmp_path / f"{rows}.csv"
        path.write_text(
            "sku,name,unit_price,currency\n"
            + "".join(f"S{rows}-{i},N{i},{i}.5,EUR\n" for i in range(rows))
        )
        staged = backoffice(loud, "import", str(path), "--customer", "LOG", "--json")
        import_id = json.loads(staged.stdout)["import"]["id"]
        done = backoffice(loud, "transform", str(import_id), "--dataset", "products", "--json")
        assert json.loads(done.stdout)["transform"]["inserted"] == rows
        lines[rows] = len(staged.stderr.splitlines()) + len(done.stderr.splitlines())
    assert lines[10] > 0 and abs(lines[20_000] - lines[10]) <= 10, lines


def run_and_list_modules(env, *args) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`backoffice ARGS` in a fresh interpreter, and the modules it imported on the way."""
    probe = (
        "import sys\n"
        "from app.cli import main\n"
        "sys.argv = ['backoffice', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    sys.stderr.write('\\nmodules: ' + ' '.join(sys.modules) + '\\n')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, *args],
        cwd=ROOT,
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    *rest, modules = result.stderr.rstrip("\n").split("\n")
    result.stderr = "\n".join(rest)
    assert modules.startswith("modules: "), result.stderr
    return result, set(modules.removeprefix("modules: ").split())


def top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


def test_help_and_version_load_neither_flask_nor_the_database_layer(tmp_path):
    """No database configured either: building the app here would start an embedded server."""
    env = {"INSTANCE_PATH": str(tmp_path / "instance")}
    helped, modules = run_and_list_modules(env, "--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("serve", "db", "doctor", "users", "import", "transform", "export"):
        assert re.search(rf"^  {command} ", helped.stdout, re.M), command
    for command in ("imports", "worker", "jobs", "customers", "demo"):
        assert re.search(rf"^  {command} ", helped.stdout, re.M), command
    heavy = {"flask", "werkzeug", "sqlalchemy", "psycopg", "alembic"}
    assert not top_level(modules) & heavy
    assert not (tmp_path / "instance").exists(), "nothing built, nothing started"

    shown, modules = run_and_list_modules(env, "--version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"backoffice {version('backoffice')}\n"
    assert not top_level(modules) & heavy


def test_bulk_commands_build_the_engines_not_the_web_app(migrated_env, tmp_path):
    """What `import` pays before its first COPY byte: no Flask, no pages, no API."""
    env = migrated_env
    assert backoffice(env, "customers", "create", "--code", "FAST", "--name", "F").returncode == 0
    path = tmp_path / "one.csv"
    path.write_text("sku,name\nA,a\n")
    staged, modules = run_and_list_modules(env, "import", str(path), "--customer", "FAST")
    assert staged.returncode == 0, staged.stderr
    assert not top_level(modules) & {"flask", "werkzeug", "jinja2", "wtforms", "flask_login"}
    assert not {m for m in modules if m.startswith(("app.web", "app.api"))}
    assert "staged: 1 row of one.csv" in staged.stdout


PRODUCTS = (
    "sku,name,unit_price,currency\n"
    "A1,Hammer,12.90,EUR\n"
    "B2,Saw,abc,EUR\n"  # not a number: rejected
    "A1,Hammer (new),13.40,EUR\n"  # the same key again: the later row wins
)


def test_bulk_commands_say_what_they_did_in_words_and_in_json(migrated_env, tmp_path):
    env = migrated_env
    assert backoffice(env, "customers", "create", "--code", "SAY", "--name", "S").returncode == 0
    source = tmp_path / "products.csv"
    source.write_text(PRODUCTS)

    staged = backoffice(env, "import", str(source), "--customer", "SAY")
    assert staged.returncode == 0, staged.stderr
    (import_id,) = re.fullmatch(
        r"import (\d+) staged: 3 rows of products\.csv\n", staged.stdout
    ).groups()

    cast = backoffice(env, "transform", import_id, "--dataset", "products")
    assert cast.returncode == 0, cast.stderr
    first, written, kept, counts, rejects = cast.stdout.splitlines()
    assert re.fullmatch(rf"transform \d+ of import {import_id} into products succeeded", first)
    assert written.startswith("written: sku, name,") and kept.startswith("left as stored: ")
    assert counts == "inserted 1, updated 0, unchanged 0, rejected 1, superseded 1"
    assert rejects == f"rejected rows: backoffice imports errors {import_id}"
    shown = backoffice(env, "imports", "errors", import_id)
    assert "line 3, unit_price: not a number" in shown.stdout

    out = tmp_path / "out.csv"
    written = backoffice(env, "export", "products", "--customer", "SAY", "--output", str(out))
    assert written.returncode == 0, written.stderr
    assert re.fullmatch(rf"export \d+: 1 row written to {re.escape(str(out))}\n", written.stdout)
    assert out.read_text().count("\n") == 2, "the header and one row"

    again = backoffice(env, "transform", import_id, "--dataset", "products", "--json")
    made = json.loads(again.stdout)
    assert set(made) == {"transform", "job"} and made["job"]["status"] == "succeeded"
    assert (made["transform"]["unchanged"], made["transform"]["rejected"]) == (1, 1)
    exported = json.loads(
        backoffice(
            env, "export", "products", "--customer", "SAY", "--output", str(out), "--json"
        ).stdout
    )
    assert set(exported) == {"export", "job"} and exported["export"]["rows"] == 1

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"a,b\n1,2,3\n")
    failed = backoffice(env, "import", str(bad), "--customer", "SAY")
    assert failed.returncode == 1
    (bad_id,) = re.match(r"import (\d+) failed: line 2: ", failed.stdout).groups()
    assert failed.stdout.splitlines()[-1] == f"see: backoffice imports errors {bad_id}"
    queued = backoffice(env, "import", str(source), "--customer", "SAY", "--async")
    assert queued.returncode == 0, queued.stderr
    assert re.fullmatch(
        r"import \d+ queued as job (\d+); follow it with: backoffice jobs show \1\n", queued.stdout
    )
