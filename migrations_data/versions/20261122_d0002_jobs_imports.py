"""Jobs, imports and their uploaded files.

Revision ID: d0002
Revises: d0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'd0002'
down_revision: str | Sequence[str] | None = 'd0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('jobs',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('params', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False),
    sa.Column('status', sa.Text(), server_default=sa.text("'queued'"), nullable=False),
    sa.Column('attempt', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('max_attempts', sa.Integer(), server_default=sa.text('3'), nullable=False),
    sa.Column('worker_id', sa.Text(), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('cancel_requested', sa.Boolean(), server_default=sa.text('false'), nullable=False),
    sa.Column('progress_done', sa.BigInteger(), server_default=sa.text('0'), nullable=False),
    sa.Column('progress_total', sa.BigInteger(), nullable=True),
    sa.Column('progress_unit', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('result', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('customer_id', sa.BigInteger(), nullable=True),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_jobs_status_valid')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs')),
    schema='workspace'
    )
    op.create_index('ix_jobs_claimable', 'jobs', ['id'], unique=False, schema='workspace', postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.create_table('imports',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('file_name', sa.Text(), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.Text(), nullable=False),
    sa.Column('encoding', sa.Text(), nullable=True),
    sa.Column('delimiter', sa.Text(), nullable=True),
    sa.Column('header', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('rows_staged', sa.BigInteger(), nullable=True),
    sa.Column('error', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('staged_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'staged', 'failed', 'cancelled', 'purged')", name=op.f('ck_imports_status_valid')),
    sa.ForeignKeyConstraint(['job_id'], ['workspace.jobs.id'], name=op.f('fk_imports_job_id_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_imports')),
    schema='workspace'
    )
    op.create_index('ix_imports_customer_id', 'imports', ['customer_id'], unique=False, schema='workspace')
    op.create_table('import_files',
    sa.Column('import_id', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['workspace.imports.id'], name=op.f('fk_import_files_import_id_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('import_id', 'seq', name=op.f('pk_import_files')),
    schema='workspace'
    )


def downgrade() -> None:
    # The staging tables the import jobs made: one per import, workspace.import_<id>.
    op.execute("""
        DO $$
        DECLARE t text;
        BEGIN
            FOR t IN SELECT tablename FROM pg_tables
                     WHERE schemaname = 'workspace' AND tablename ~ '^import_[0-9]+$'
            LOOP
                EXECUTE format('DROP TABLE workspace.%I', t);
            END LOOP;
        END $$
    """)
    op.drop_table('import_files', schema='workspace')
    op.drop_index('ix_imports_customer_id', table_name='imports', schema='workspace')
    op.drop_table('imports', schema='workspace')
    op.drop_index('ix_jobs_claimable', table_name='jobs', schema='workspace', postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.drop_table('jobs', schema='workspace')
