"""Least-privilege database roles: an owner that runs the migrations, a runtime role for the app
and the workers (`backoffice db roles`).

Per engine, as the schema-to-engine map says (single mode: every schema in one database):

- the owner (LOGIN, nothing more) owns the engine's schemas and every table the migrations
  make; it may create schemas in the database and tables in `public` (the version tables);
- the runtime role (LOGIN, nothing more) has SELECT, INSERT, UPDATE, DELETE on the engine's
  tables and USAGE on their sequences, now and, through default privileges, on every table the
  owner makes later; CREATE in `workspace` only, where the jobs make their staging and cast
  tables (which it then owns, so it may rename and drop them, and nothing else there); SELECT
  only on the version tables; INSERT and SELECT only on append-only tables (the audit log);
- in split mode, the runtime role loses whatever it had on the other engine's schemas found in
  this database (the old copies `db split` and `db merge` leave behind).

The statements are one idempotent script per engine: `--print-sql` prints exactly what the
command runs, for a database the command cannot reach. Role names are checked against a plain
identifier pattern, so they are written into the script as they are; passwords go in as SCRAM
verifiers computed here, never as plain text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, text

from app.db.migrations import ROLE_TABLE, STAGING_TABLE, VERSION_SCHEMA, VERSION_TABLES
from app.db.schemas import SCHEMA_ENGINE, EngineRole, schemas_of
from app.errors import ConfigError

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Where the jobs make their own tables (import staging, transform cast rows).
JOB_SCHEMA = "workspace"
SCRAM_ITERATIONS = 4096  # PostgreSQL's own default (scram_iterations)
DML = "SELECT, INSERT, UPDATE, DELETE"


def checked_name(name: str) -> str:
    if not ROLE_NAME.match(name) or name.startswith("pg_"):
        raise ConfigError(
            f"role name {name!r}: use lower-case letters, digits and _ (at most 63, not pg_...)"
        )
    return name


def new_password() -> str:
    return secrets.token_urlsafe(32)


def scram_verifier(password: str, *, salt: bytes | None = None) -> str:
    """What PostgreSQL stores for a SCRAM-SHA-256 password (RFC 5802/7677), made here so that
    the plain password never reaches the server, its log or a printed script. Printable ASCII
    only: PostgreSQL's SASLprep leaves it as it is."""
    if not password or not all(32 <= ord(c) < 127 for c in password):
        raise ConfigError("a role's password must be printable ASCII, and not empty")
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, SCRAM_ITERATIONS)
    stored = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
    server = hmac.digest(salted, b"Server Key", "sha256")

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored)}:{b64(server)}"


@dataclass(frozen=True)
class RolePassword:
    verifier: str
    always: bool  # set on an existing role too (given by the operator), else only at creation


@dataclass(frozen=True)
class RolePlan:
    owner: str
    runtime: str
    append_only: tuple[str, ...] = ()  # "schema.table": INSERT and SELECT only
    passwords: tuple[tuple[str, RolePassword], ...] = ()

    def password_of(self, name: str) -> RolePassword | None:
        return dict(self.passwords).get(name)


def engine_schemas(role: EngineRole, *, split: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the schemas the engine's database serves, the other engine's schemas)."""
    if not split:
        return tuple(SCHEMA_ENGINE), ()
    other: EngineRole = "data" if role == "primary" else "primary"
    return schemas_of(role), schemas_of(other)


def _do(body: str, declare: str = "") -> str:
    return f"DO $do$ {declare}BEGIN\n{body}\nEND $do$"


def _role_statements(plan: RolePlan) -> list[str]:
    statements = []
    for name in (plan.owner, plan.runtime):
        password = plan.password_of(name)
        create = f'CREATE ROLE "{name}" LOGIN'
        if password:
            create += f" PASSWORD '{password.verifier}'"
        statements.append(
            _do(
                f"  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN\n"
                f"    {create};\n  END IF;\n"
                # Only when wrong: a managed server's administrator may not name SUPERUSER.
                f"  IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}' AND (rolsuper "
                "OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls)) THEN\n"
                f'    ALTER ROLE "{name}" NOSUPERUSER NOCREATEROLE NOCREATEDB NOREPLICATION '
                "NOBYPASSRLS;\n  END IF;\n"
                f"  IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = '{name}') THEN\n"
                f'    ALTER ROLE "{name}" LOGIN;\n  END IF;'
            )
        )
        if password and password.always:
            statements.append(f"ALTER ROLE \"{name}\" PASSWORD '{password.verifier}'")
    return statements


def _database_statements(plan: RolePlan) -> list[str]:
    owner, runtime = plan.owner, plan.runtime
    version_tables = sorted({*VERSION_TABLES.values(), ROLE_TABLE})
    return [
        _do(
            "  EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO "
            f'"{owner}"\', current_database());\n'
            # TEMPORARY: a transform's preview casts into a temporary table.
            "  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO "
            f'"{runtime}"\', current_database());\n'
            f"  EXECUTE format('REVOKE CREATE ON DATABASE %I FROM \"{runtime}\"', "
            "current_database());"
        ),
        # Before PostgreSQL 15 everyone may create tables in `public`.
        f"REVOKE CREATE ON SCHEMA {VERSION_SCHEMA} FROM PUBLIC",
        f'GRANT USAGE, CREATE ON SCHEMA {VERSION_SCHEMA} TO "{owner}"',
        f'GRANT USAGE ON SCHEMA {VERSION_SCHEMA} TO "{runtime}"',
        f'REVOKE CREATE ON SCHEMA {VERSION_SCHEMA} FROM "{runtime}"',
        # The version tables: the owner's (the migrations write them), read by readiness.
        _do(
            f"  FOR t IN SELECT unnest(ARRAY[{', '.join(repr(t) for t in version_tables)}]) "
            "LOOP\n"
            f"    IF to_regclass('{VERSION_SCHEMA}.' || quote_ident(t)) IS NOT NULL THEN\n"
            f"      EXECUTE format('ALTER TABLE {VERSION_SCHEMA}.%I OWNER TO \"{owner}\"', t);\n"
            f"      EXECUTE format('REVOKE ALL ON {VERSION_SCHEMA}.%I FROM \"{runtime}\"', t);\n"
            f"      EXECUTE format('GRANT SELECT ON {VERSION_SCHEMA}.%I TO \"{runtime}\"', t);\n"
            "    END IF;\n  END LOOP;",
            declare="DECLARE t text; ",
        ),
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA {VERSION_SCHEMA} '
        f'GRANT SELECT ON TABLES TO "{runtime}"',
    ]


def _ownership(schema: str, plan: RolePlan) -> str:
    """Hand what is already in the schema to the owner (a database migrated by another user
    before the roles existed), and the jobs' own tables in `workspace` to the runtime role.
    Sequences that belong to a column follow their table."""
    staging = f"c.relname ~ '{STAGING_TABLE.pattern}'" if schema == JOB_SCHEMA else "false"
    return _do(
        "  FOR r IN SELECT c.oid::regclass AS name, c.relkind,\n"
        f"      CASE WHEN {staging} THEN '{plan.runtime}' ELSE '{plan.owner}' END AS new_owner\n"
        "    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace\n"
        f"    WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')\n"
        "      AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass\n"
        "        AND d.objid = c.oid AND d.deptype IN ('a', 'i'))\n"
        "  LOOP\n"
        "    IF (SELECT relowner FROM pg_class WHERE oid = r.name) <> "
        "(SELECT oid FROM pg_roles WHERE rolname = r.new_owner) THEN\n"
        "      EXECUTE format('ALTER %s %s OWNER TO %I', CASE r.relkind WHEN 'v' THEN 'VIEW'\n"
        "        WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'\n"
        "        WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, r.name, r.new_owner);\n"
        "    END IF;\n  END LOOP;\n"
        "  FOR f IN SELECT p.oid::regprocedure FROM pg_proc p\n"
        "    JOIN pg_namespace n ON n.oid = p.pronamespace\n"
        f"    WHERE n.nspname = '{schema}' AND p.proowner <> "
        f"(SELECT oid FROM pg_roles WHERE rolname = '{plan.owner}')\n"
        "  LOOP\n"
        f"    EXECUTE format('ALTER ROUTINE %s OWNER TO \"{plan.owner}\"', f);\n"
        "  END LOOP;",
        declare="DECLARE r record; f regprocedure; ",
    )


def _own_schema_statements(schema: str, plan: RolePlan) -> list[str]:
    owner, runtime = plan.owner, plan.runtime
    create = "GRANT" if schema == JOB_SCHEMA else "REVOKE"
    to_from = "TO" if schema == JOB_SCHEMA else "FROM"
    statements = [
        f'CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION "{owner}"',
        f'ALTER SCHEMA {schema} OWNER TO "{owner}"',
        _ownership(schema, plan),
        f'GRANT USAGE ON SCHEMA {schema} TO "{runtime}"',
        f'{create} CREATE ON SCHEMA {schema} {to_from} "{runtime}"',
        f'GRANT {DML} ON ALL TABLES IN SCHEMA {schema} TO "{runtime}"',
        f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO "{runtime}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA {schema} '
        f'GRANT {DML} ON TABLES TO "{runtime}"',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA {schema} '
        f'GRANT USAGE, SELECT ON SEQUENCES TO "{runtime}"',
    ]
    for table in plan.append_only:
        if table.split(".", 1)[0] == schema:
            # The default privileges above give UPDATE and DELETE to a table made after this
            # script; the migration that made the audit log takes them back from everyone.
            statements.append(
                _do(
                    f"  IF to_regclass('{table}') IS NOT NULL THEN\n"
                    f'    REVOKE UPDATE, DELETE, TRUNCATE ON {table} FROM "{runtime}";\n'
                    "  END IF;"
                )
            )
    return statements


def _other_schema_statements(schema: str, plan: RolePlan) -> list[str]:
    owner, runtime = plan.owner, plan.runtime
    return [
        _do(
            f"  IF EXISTS (SELECT FROM pg_namespace WHERE nspname = '{schema}') THEN\n"
            f'    REVOKE ALL ON SCHEMA {schema} FROM "{runtime}";\n'
            f'    REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM "{runtime}";\n'
            f'    REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM "{runtime}";\n'
            f'    ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA {schema} '
            f'REVOKE ALL ON TABLES FROM "{runtime}";\n'
            f'    ALTER DEFAULT PRIVILEGES FOR ROLE "{owner}" IN SCHEMA {schema} '
            f'REVOKE ALL ON SEQUENCES FROM "{runtime}";\n'
            "  END IF;"
        )
    ]


def engine_script(role: EngineRole, plan: RolePlan, *, split: bool) -> list[str]:
    """The statements that make one engine's database ready for the two roles."""
    own, other = engine_schemas(role, split=split)
    statements = _role_statements(plan) + _database_statements(plan)
    for schema in own:
        statements += _own_schema_statements(schema, plan)
    for schema in other:
        statements += _other_schema_statements(schema, plan)
    return statements


def as_text(role: EngineRole, statements: Iterable[str], *, split: bool) -> str:
    own, _ = engine_schemas(role, split=split)
    where = f"the {role} engine's database" if split else "the database"
    head = f"-- {where} (schemas {', '.join(own)}); run as a superuser or the administrator\n"
    return head + "BEGIN;\n" + "".join(f"{s};\n" for s in statements) + "COMMIT;\n"


def existing_roles(conn: Connection, names: Iterable[str]) -> set[str]:
    rows = conn.execute(
        text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"), {"names": list(names)}
    )
    return set(rows.scalars())


def run_script(conn: Connection, statements: Iterable[str]) -> None:
    """On the caller's transaction, through the driver: the statements carry `%` and `:`,
    which SQLAlchemy's text() and a parameter style would read as placeholders."""
    cursor = conn.connection.dbapi_connection.cursor()
    for statement in statements:
        cursor.execute(statement)
