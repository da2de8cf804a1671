"""No URL configured: the backoffice starts its own PostgreSQL under the instance folder."""

import multiprocessing
import os
import stat
import subprocess

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import _development_secret_key, create_app
from app.db import migrations
from app.db.embedded import EmbeddedPostgres, embedded_servers
from tests.harness import backoffice


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


def _port(url: str) -> int:
    return make_url(url).port


def refuses_without_password(port: int, database: str) -> str:
    """The server's answer to a connection that gives no password (its error message)."""
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname=database, connect_timeout=5
        ).close()
    return str(refused.value)


def answers(url: str) -> int:
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, connect_timeout=5) as conn:
        return conn.execute("SELECT 1").fetchone()[0]


def test_embedded_server_asks_for_the_password_kept_in_a_private_file(tmp_path):
    server = EmbeddedPostgres(tmp_path / "postgres" / "main", "backoffice", fast=True)
    try:
        url = server.start()
        assert "password" in refuses_without_password(_port(url), "backoffice")
        assert answers(url) == 1
        password_file = tmp_path / "postgres" / "main.password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert make_url(url).password == password_file.read_text().strip()
        hba = (server.datadir / "pg_hba.conf").read_text()
        assert "trust" not in [w for line in hba.splitlines() for w in line.split("#")[0].split()]
    finally:
        server.stop()


def test_embedded_server_is_a_patched_postgresql_16(tmp_path):
    # 16: the major version that made every data directory under instance/postgres/ so far
    # (a later major cannot open them); 16.14: the fixes of the 16 series up to 2026.
    server = EmbeddedPostgres(tmp_path / "postgres" / "main", "backoffice", fast=True)
    try:
        url = server.start()
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo) as conn:
            version = int(conn.execute("SHOW server_version_num").fetchone()[0])
        assert 160014 <= version < 170000, f"PostgreSQL {version}"
        assert (server.datadir / "PG_VERSION").read_text().strip() == "16"
    finally:
        server.stop()


def make_trusting(server: EmbeddedPostgres, url: str) -> None:
    """What a data directory initialised before passwords looks like: every connection
    trusted, the superuser without a password, no password file."""
    hba = server.datadir / "pg_hba.conf"
    hba.write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
    )
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ALTER ROLE postgres PASSWORD NULL")
        conn.execute("SELECT pg_reload_conf()")
    (server.datadir.parent / f"{server.datadir.name}.password").unlink()


@pytest.mark.parametrize("running", [True, False], ids=["running", "stopped"])
def test_instance_initialised_with_trust_is_given_a_password_on_start(tmp_path, running):
    folder = tmp_path / "postgres" / "main"
    old = EmbeddedPostgres(folder, "backoffice", fast=True)
    url = old.start()
    try:
        make_trusting(old, url)
        with psycopg.connect(
            host="127.0.0.1", port=_port(url), user="postgres", dbname="backoffice"
        ) as conn:
            conn.execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)")
        if not running:
            old.stop()

        upgraded = EmbeddedPostgres(folder, "backoffice", fast=True)
        url = upgraded.start()
        assert "password" in refuses_without_password(_port(url), "backoffice")
        password_file = folder.parent / "main.password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone()[0] == 7
    finally:
        EmbeddedPostgres(folder, "backoffice").stop()


def test_private_instance_folder_stays_closed_to_other_users(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    server = EmbeddedPostgres(private / "instance" / "postgres" / "main", "backoffice", fast=True)
    try:
        assert answers(server.start()) == 1
        assert private.stat().st_mode & 0o007 == 0, "no traverse bit for every local user"
        if os.geteuid() == 0:  # the server runs as a user of its own: anybody else is kept out
            other = subprocess.run(["ls", str(private)], user="nobody", capture_output=True)
            assert other.returncode != 0, "another local user may list the private folder"
    finally:
        server.stop()


def test_doctor_prints_the_embedded_url_without_its_password(tmp_path, split):
    env = {"APP_ENV": "test", "INSTANCE_PATH": str(tmp_path), "SPLIT_DB_MODE": str(split)}
    try:
        doctor = backoffice(env, "doctor")
        passwords = [p.read_text().strip() for p in (tmp_path / "postgres").glob("*.password")]
        assert len(passwords) == (2 if split else 1)
        assert "127.0.0.1" in doctor.stdout and "***" in doctor.stdout, doctor.stderr
        for password in passwords:
            assert password not in doctor.stdout + doctor.stderr
    finally:
        for server in embedded_servers(tmp_path):
            server.stop()


def _first_start(instance: str, ready, keys) -> None:
    ready.wait()
    keys.put(_development_secret_key(instance))


def test_secret_key_is_private_and_shared_by_concurrent_first_starts(tmp_path):
    context = multiprocessing.get_context("fork")
    for attempt in range(10):
        instance = tmp_path / str(attempt)
        instance.mkdir()
        ready, keys = context.Barrier(6), context.Queue()
        starts = [
            context.Process(target=_first_start, args=(str(instance), ready, keys))
            for _ in range(6)
        ]
        for process in starts:
            process.start()
        found = {keys.get(timeout=30) for _ in starts}
        for process in starts:
            process.join(timeout=30)
        key_file = instance / "secret_key"
        assert found == {key_file.read_text().strip()}, "every process got the same key"
        assert len(found.pop()) >= 32
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert [p.name for p in instance.iterdir()] == ["secret_key"], "no file left behind"
