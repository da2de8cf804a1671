"""Backups per engine: back up, wipe, restore, and find the same rows; no restore over data."""

import os
import subprocess
import sys

from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import create_app
from app.audit import Actor
from app.customers import service as customers
from app.db import backup as backup_module
from app.db import migrations
from app.db.session import session_scope
from app.jobs.worker import run_now
from app.transforms import service as transforms
from tests.conftest import create_user, queue_import
from tests.harness import environment

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts")


def script(env, name, *args):
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return subprocess.run(
        [os.path.join(SCRIPTS, name), *args],
        env=environment({**env, "PATH": path}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def snapshot(engines) -> dict:
    queries = {
        "primary": [
            "SELECT email, role FROM config.users ORDER BY id",
            "SELECT code, name, status FROM customer.customers ORDER BY id",
            "SELECT version_num FROM public.alembic_version_primary",
        ],
        "data": [
            "SELECT sku, name, unit_price::text FROM reference.products ORDER BY sku",
            "SELECT id, status, rows_staged FROM workspace.imports ORDER BY id",
            "SELECT version_num FROM public.alembic_version_data",
        ],
    }
    found = {}
    for role, statements in queries.items():
        with engines.connect(role) as conn:
            found[role] = [conn.execute(text(q)).all() for q in statements]
    return found


def test_backup_wipe_restore_gives_the_same_rows(make_env, tmp_path):
    env = make_env("backup")
    application = create_app(env)
    bo = application.extensions["backoffice"]
    try:
        migrations.upgrade(bo.engines)
        create_user(bo.session_factory, "admin")
        with session_scope(bo.session_factory) as session:
            customer = customers.create_customer(
                session, Actor(None, "t"), code="KEPT", name="Kept"
            )
        import_id, job_id = queue_import(
            bo, customer, b"sku,name,unit_price,currency\nA,Alpha,1.5,EUR\nB,Beta,2,EUR\n"
        )
        run_now(bo, job_id)
        with session_scope(bo.session_factory) as session:
            t = transforms.create(
                session, bo.references, import_id=import_id, dataset="products", created_by=None
            )
            job_id = t.job_id
        run_now(bo, job_id)
        before = snapshot(bo.engines)
        assert len(before["data"][0]) == 2

        for role in ("primary", "data"):
            result = script(env, "backup", role, str(tmp_path / f"{role}.dump"))
            assert result.returncode == 0, result.stderr
        refused = script(env, "restore", "data", str(tmp_path / "data.dump"))
        assert refused.returncode == 1 and "already has" in refused.stderr
        assert "Traceback" not in refused.stderr

        for role in ("primary", "data"):  # wipe
            migrations.downgrade(bo.engines, role, "base")
        bo.engines.dispose()
        assert snapshot_fails(bo.engines)

        for role in ("primary", "data"):
            result = script(env, "restore", role, str(tmp_path / f"{role}.dump"))
            assert result.returncode == 0, result.stderr
        assert snapshot(bo.engines) == before
        assert migrations.check(bo.engines) == {"primary": [], "data": []}

        replaced = script(env, "restore", "data", str(tmp_path / "data.dump"), "--replace")
        assert replaced.returncode == 0, replaced.stderr
        assert snapshot(bo.engines) == before
    finally:
        bo.close()


def snapshot_fails(engines) -> bool:
    try:
        snapshot(engines)
    except Exception:
        return True
    return False


def test_backup_and_restore_keep_the_password_off_the_command_line(make_env, tmp_path, monkeypatch):
    """A command line is readable by every local user (`ps`): pg_dump and pg_restore get the
    password some other way, and still reach a server that asks for it."""
    env = make_env("argv")
    passwords = {make_url(env[name]).password for name in env if name.endswith("DATABASE_URL")}
    assert None not in passwords, "the test servers ask for a password"
    commands = []
    real_run = subprocess.run

    def watched_run(command, *args, **kwargs):
        commands.append(command)
        return real_run(command, *args, **kwargs)

    monkeypatch.setattr(backup_module.subprocess, "run", watched_run)
    application = create_app(env)
    bo = application.extensions["backoffice"]
    try:
        migrations.upgrade(bo.engines)
        create_user(bo.session_factory, "admin", email="kept@example.com")
        backup_module.backup(bo.engines, "primary", tmp_path / "primary.dump")
        backup_module.restore(bo.engines, "primary", tmp_path / "primary.dump", replace=True)
        with bo.engines.connect("primary") as conn:
            emails = conn.execute(text("SELECT email FROM config.users")).scalars().all()
        assert emails == ["kept@example.com"]
    finally:
        bo.close()
    tools = {os.path.basename(command[0]) for command in commands}
    assert {"pg_dump", "pg_restore"} <= tools
    for command in commands:
        for argument in command:
            assert not any(p in argument for p in passwords), f"password in {command}"
