"""The schema-to-engine map is the one source of truth, and no model breaks it."""

import ast
from pathlib import Path

import pytest
from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table

from app.db import migrations
from app.db.base import BASES, PrimaryBase, layout_violations
from app.db.schemas import DATA, PRIMARY, SCHEMA_ENGINE, engine_of, schemas_of
from app.models import METADATA


def test_map_assigns_the_four_schemas_to_their_engines():
    assert schemas_of(PRIMARY) == ("config", "customer")
    assert schemas_of(DATA) == ("workspace", "reference")
    assert engine_of("reference") == DATA
    with pytest.raises(KeyError, match="not in the schema-to-engine map"):
        engine_of("public")


def test_no_model_sits_in_a_schema_its_base_does_not_own_and_no_foreign_key_crosses():
    assert layout_violations(METADATA) == []


# What app/db/ is built on; everything else in app/ is built on it.
DB_FOUNDATIONS = (
    "app.db",
    "app.config",
    "app.database_url",
    "app.setting_values",
    "app.errors",
    "app.private_file",
)


def test_the_db_package_imports_nothing_that_is_built_on_it():
    upward = []
    for path in sorted((Path(__file__).parents[1] / "app" / "db").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
                if node.module == "app":
                    names = [f"app.{alias.name}" for alias in node.names]
            else:
                continue
            upward += [
                f"{path.name}:{node.lineno} {name}"
                for name in names
                if name.startswith("app.") and not name.startswith(DB_FOUNDATIONS)
            ]
    assert upward == []


def test_layout_check_catches_a_cross_engine_foreign_key_and_a_misplaced_table():
    primary, data = MetaData(), MetaData()
    Table("customers", primary, Column("id", Integer, primary_key=True), schema="customer")
    Table("jobs", primary, Column("id", Integer, primary_key=True), schema="workspace")
    Table(
        "imports",
        data,
        Column("id", Integer, primary_key=True),
        Column("customer_id", ForeignKey("customer.customers.id")),
        schema="workspace",
    )
    problems = layout_violations({PRIMARY: primary, DATA: data})
    assert any("workspace.jobs: on the primary base" in p for p in problems)
    assert any(
        "workspace.imports.customer_id: foreign key to customer.customers" in p for p in problems
    )


def test_each_tree_filters_autogenerate_to_its_own_schemas():
    for role in BASES:
        include = migrations.include_name_for(role)
        for schema, owner in SCHEMA_ENGINE.items():
            assert include(schema, "schema", {}) is (owner == role)
        assert include(None, "schema", {}) is False  # public holds only the version tables


def test_bases_keep_separate_metadata():
    assert BASES[PRIMARY] is PrimaryBase
    assert BASES[PRIMARY].metadata is not BASES[DATA].metadata


def test_drift_checks_ignore_the_import_staging_tables():
    include = migrations.include_name_for(DATA)
    for name in ("import_12", "import_12_a3"):
        assert include(name, "table", {"schema_name": "workspace"}) is False
    assert include("imports", "table", {"schema_name": "workspace"}) is True
    assert include("import_12", "table", {"schema_name": "reference"}) is True
