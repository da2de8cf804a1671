"""Where each staged record starts in its file, kept as anchors instead of a column per row.

A staged table no longer carries a `line` for every record (the client sends the file's bytes
to COPY untouched): `workspace.import_lines` keeps, per import, the records where "one line
per record" breaks (the first record, and the one after a record that spans lines or after a
blank line). A record's line is its anchor's line plus its distance from the anchor.

Staged tables made before keep their `line` column; their anchors are derived from it here.

Revision ID: d0007_import_lines
Revises: d0006_export_formulas
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd0007_import_lines'
down_revision: str | Sequence[str] | None = 'd0006_export_formulas'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'import_lines',
        sa.Column(
            'import_id',
            sa.BigInteger(),
            sa.ForeignKey('workspace.imports.id', ondelete='CASCADE'),
            nullable=False,
        ),
        sa.Column('rec', sa.BigInteger(), nullable=False),
        sa.Column('line', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('import_id', 'rec'),
        schema='workspace',
    )
    op.execute(
        """
        DO $$
        DECLARE staged record;
        BEGIN
          FOR staged IN
            SELECT i.id FROM workspace.imports i
            JOIN pg_tables t ON t.schemaname = 'workspace' AND t.tablename = 'import_' || i.id
            JOIN information_schema.columns c ON c.table_schema = 'workspace'
             AND c.table_name = t.tablename AND c.column_name = 'line'
          LOOP
            EXECUTE format(
              'INSERT INTO workspace.import_lines (import_id, rec, line) '
              'SELECT %s, rec, line FROM (SELECT rec, line, '
              'lag(rec) OVER w AS prev_rec, lag(line) OVER w AS prev_line '
              'FROM workspace.%I WINDOW w AS (ORDER BY rec)) s '
              'WHERE prev_rec IS NULL OR line - prev_line <> rec - prev_rec',
              staged.id, 'import_' || staged.id);
          END LOOP;
        END $$
        """
    )


def downgrade() -> None:
    op.drop_table('import_lines', schema='workspace')
