"""The audit log's rows are only added: UPDATE, DELETE and TRUNCATE are taken back from every
role but the table's owner.

With `backoffice db roles`, the owner's default privileges give the runtime role UPDATE and
DELETE on every table the migrations make, the audit log included. Its trigger refuses those
statements anyway; this takes away the privilege too, so the runtime role is refused before
any trigger runs. A database whose roles are set up after this revision gets the same from
`db roles` itself.

Revision ID: p0004
Revises: p0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "p0004"
down_revision: str | Sequence[str] | None = "p0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("""
        DO $do$ DECLARE grantee_name text; BEGIN
            FOR grantee_name IN
                SELECT DISTINCT a.grantee::regrole::text
                FROM pg_class c, aclexplode(c.relacl) a
                WHERE c.oid = 'config.audit_log'::regclass AND a.grantee <> 0
                  AND a.grantee <> c.relowner
                  AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')
            LOOP
                EXECUTE format(
                    'REVOKE UPDATE, DELETE, TRUNCATE ON config.audit_log FROM %s', grantee_name
                );
            END LOOP;
        END $do$
    """)
    op.execute("REVOKE UPDATE, DELETE, TRUNCATE ON config.audit_log FROM PUBLIC")


def downgrade() -> None:
    pass  # privileges taken back are not given again
