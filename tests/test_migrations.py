"""The two Alembic trees: upgrade, downgrade, check, repair, and the wrong-database refusal."""

import json
import subprocess

import psycopg
import pytest
from alembic import command
from sqlalchemy import Column, Integer, Table, text
from sqlalchemy.engine import make_url

from app.db import migrations
from app.db.base import PrimaryBase
from app.db.schemas import DATA, PRIMARY, schemas_of
from tests.harness import ROOT, backoffice, environment


def engines_of(app):
    return app.extensions["backoffice"].engines


def live_schemas(engines, role):
    with engines.connect(role) as conn:
        names = conn.execute(text("SELECT nspname FROM pg_namespace")).scalars()
        return set(names) & {"config", "customer", "workspace", "reference"}


def test_both_trees_upgrade_downgrade_and_upgrade_again(fresh_app):
    engines = engines_of(fresh_app)
    assert [st.state for st in migrations.status(engines)] == ["empty", "empty"]

    migrations.upgrade(engines)
    assert [st.state for st in migrations.status(engines)] == ["current", "current"]
    for role in (PRIMARY, DATA):
        assert set(schemas_of(role)) <= live_schemas(engines, role)

    migrations.downgrade(engines, DATA, "base")
    assert live_schemas(engines, DATA).isdisjoint(schemas_of(DATA))
    assert set(schemas_of(PRIMARY)) <= live_schemas(engines, PRIMARY), "primary untouched"
    migrations.downgrade(engines, PRIMARY, "base")
    assert [st.state for st in migrations.status(engines)] == ["empty", "empty"]

    migrations.upgrade(engines)
    assert migrations.check(engines) == {PRIMARY: [], DATA: []}


def test_check_reports_a_database_behind_its_code(fresh_app):
    engines = engines_of(fresh_app)
    migrations.upgrade(engines, [PRIMARY])
    problems = migrations.check(engines)
    assert problems[PRIMARY] == []
    assert any("migrations empty" in p for p in problems[DATA])


def test_check_catches_a_model_change_without_a_revision(app):
    engines = engines_of(app)
    table = Table(
        "unmigrated_things",
        PrimaryBase.metadata,
        Column("id", Integer, primary_key=True),
        schema="config",
    )
    try:
        problems = migrations.check(engines)
    finally:
        PrimaryBase.metadata.remove(table)
    assert problems[PRIMARY] == ["model drift: add table config.unmigrated_things"]
    assert problems[DATA] == []


def test_repair_stamps_a_database_whose_version_table_was_dropped(fresh_app):
    engines = engines_of(fresh_app)
    migrations.upgrade(engines)
    with engines.begin(PRIMARY) as conn:
        conn.execute(text("DROP TABLE public.alembic_version_primary"))
    assert migrations.status(engines, [PRIMARY])[0].state == "empty"

    message = migrations.repair(engines, PRIMARY)
    assert "stamped" in message
    assert migrations.status(engines, [PRIMARY])[0].state == "current"
    assert "nothing to repair" in migrations.repair(engines, PRIMARY)


def test_repair_refuses_when_the_live_schema_differs_from_the_models(fresh_app):
    engines = engines_of(fresh_app)
    migrations.upgrade(engines)
    with engines.begin(DATA) as conn:
        conn.execute(text("DROP TABLE public.alembic_version_data"))
        conn.execute(text("DROP SCHEMA reference CASCADE"))
    with pytest.raises(migrations.MigrationRefused, match="missing schema reference"):
        migrations.repair(engines, DATA)
    assert migrations.status(engines, [DATA])[0].state == "empty", "nothing was stamped"


def test_a_tree_refuses_the_database_of_the_other_engine(fresh_app, split):
    engines = engines_of(fresh_app)
    migrations.upgrade(engines)
    with engines.connect(PRIMARY) as conn:
        roles = migrations.recorded_roles(conn)
    if not split:
        # One database serves both engines: both trees are recorded on it, and both run.
        assert roles == {PRIMARY, DATA}
        return
    assert roles == {PRIMARY}
    # Point the data tree at the primary database, as a swapped DATA_DATABASE_URL would.
    with engines.begin(PRIMARY) as conn:
        cfg = migrations.alembic_config(DATA, split=True, connection=conn)
        with pytest.raises(migrations.WrongDatabase, match="serves the primary engine"):
            command.upgrade(cfg, "heads")
    with engines.connect(PRIMARY) as conn:
        assert "workspace" not in set(
            conn.execute(text("SELECT nspname FROM pg_namespace")).scalars()
        )


def test_staged_tables_of_before_get_their_line_anchors(fresh_app):
    """Staged tables made before d0007 carry a line per record; the upgrade keeps where the
    line numbering breaks, so their rows and rejects show the same lines as before."""
    engines = engines_of(fresh_app)
    migrations.upgrade(engines, [PRIMARY])
    migrations.upgrade(engines, [DATA], "d0006_export_formulas")
    with engines.begin(DATA) as conn:
        conn.execute(
            text(
                "INSERT INTO workspace.imports "
                "(id, customer_id, status, size_bytes, sha256, file_name) "
                "VALUES (7, 1, 'staged', 0, '', 'old.csv')"
            )
        )
        conn.execute(text("CREATE TABLE workspace.import_7 (rec bigint, line bigint, c1 text)"))
        # Records 1-2 on lines 2-3, record 3 spans lines 4-5, then 4-5 on lines 6-7, a blank
        # line 8, record 6 on line 9.
        conn.execute(
            text(
                "INSERT INTO workspace.import_7 VALUES "
                "(1, 2, 'a'), (2, 3, 'b'), (3, 4, 'c'), (4, 6, 'd'), (5, 7, 'e'), (6, 9, 'f')"
            )
        )
    migrations.upgrade(engines, [DATA])
    with engines.connect(DATA) as conn:
        anchors = conn.execute(
            text("SELECT rec, line FROM workspace.import_lines WHERE import_id = 7 ORDER BY rec")
        ).all()
        assert [tuple(a) for a in anchors] == [(1, 2), (4, 6), (6, 9)]
        from psycopg import sql

        from app.imports.lines import line_of

        cursor = conn.connection.dbapi_connection.cursor()
        query = sql.SQL("SELECT rec, {} FROM workspace.import_7 s ORDER BY rec").format(
            line_of(7, sql.SQL("s.rec"))
        )
        assert cursor.execute(query).fetchall() == [(1, 2), (2, 3), (3, 4), (4, 6), (5, 7), (6, 9)]


def migrate_script(env, name, *args):
    """`scripts/<name> ARGS` as an operator runs it, in a child process on `env`."""
    return subprocess.run(
        [str(ROOT / "scripts" / name), *args],
        env=environment(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_sql(env, role, statement):
    """One statement on the database of an engine (single mode: the one database)."""
    url = env.get(f"{role.upper()}_DATABASE_URL") or env["PRIMARY_DATABASE_URL"]
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        conn.execute(statement)


def drop_version_table(env, role):
    run_sql(env, role, f"DROP TABLE public.alembic_version_{role}")


def test_migrate_scripts_repair_like_db_repair_and_status_takes_a_tree(migrated_env):
    drop_version_table(migrated_env, PRIMARY)
    drop_version_table(migrated_env, DATA)
    status = backoffice(migrated_env, "db", "status", "primary", "--json")
    assert json.loads(status.stdout).keys() == {"primary"}
    assert json.loads(status.stdout)["primary"]["state"] == "empty"

    repaired = migrate_script(migrated_env, "migrate-primary", "--repair")
    assert repaired.returncode == 0, repaired.stderr
    assert repaired.stdout.startswith("primary: stamped ")
    one = backoffice(migrated_env, "db", "status", "primary")
    assert one.stdout.startswith("primary  current") and "data" not in one.stdout
    other = backoffice(migrated_env, "db", "status", "data")
    assert other.stdout.startswith("data     empty") and "primary" not in other.stdout

    both = migrate_script(migrated_env, "migrate-all", "--repair")
    assert both.returncode == 0, both.stderr
    assert "primary: already at" in both.stdout and "data: stamped" in both.stdout
    status = json.loads(backoffice(migrated_env, "db", "status", "--json").stdout)
    assert {tree: st["state"] for tree, st in status.items()} == {
        "primary": "current",
        "data": "current",
    }
    again = migrate_script(migrated_env, "migrate-data", "--repair")
    assert again.returncode == 0 and "data: already at" in again.stdout


def test_migrate_script_repair_refuses_a_schema_that_differs(migrated_env):
    drop_version_table(migrated_env, DATA)
    run_sql(migrated_env, DATA, "DROP SCHEMA reference CASCADE")
    refused = migrate_script(migrated_env, "migrate-data", "--repair")
    assert refused.returncode != 0
    assert "missing schema reference" in refused.stderr
    status = json.loads(backoffice(migrated_env, "db", "status", "data", "--json").stdout)
    assert status["data"]["state"] == "empty", "nothing was stamped"
