"""Transforms, their rejected rows, and exports.

Revision ID: d0003
Revises: d0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'd0003'
down_revision: str | Sequence[str] | None = 'd0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('exports',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('dataset', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('format', sa.Text(), nullable=False),
    sa.Column('status', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('file_name', sa.Text(), nullable=True),
    sa.Column('rows', sa.BigInteger(), nullable=True),
    sa.Column('size_bytes', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("format IN ('csv', 'csv.gz')", name=op.f('ck_exports_format_valid')),
    sa.ForeignKeyConstraint(['job_id'], ['workspace.jobs.id'], name=op.f('fk_exports_job_id_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exports')),
    schema='workspace'
    )
    op.create_table('transforms',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('import_id', sa.BigInteger(), nullable=False),
    sa.Column('dataset', sa.Text(), nullable=False),
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.BigInteger(), nullable=True),
    sa.Column('job_id', sa.BigInteger(), nullable=True),
    sa.Column('mapping', postgresql.JSONB(astext_type=sa.Text()), nullable=False),
    sa.Column('extra_headers', postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'[]'::jsonb"), nullable=False),
    sa.Column('max_rejects', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.Text(), server_default=sa.text("'pending'"), nullable=False),
    sa.Column('counts', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['import_id'], ['workspace.imports.id'], name=op.f('fk_transforms_import_id_imports'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['job_id'], ['workspace.jobs.id'], name=op.f('fk_transforms_job_id_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transforms')),
    schema='workspace'
    )
    op.create_index('ix_transforms_import_id', 'transforms', ['import_id'], unique=False, schema='workspace')
    op.create_table('transform_errors',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('transform_id', sa.BigInteger(), nullable=False),
    sa.Column('import_id', sa.BigInteger(), nullable=False),
    sa.Column('line', sa.BigInteger(), nullable=False),
    sa.Column('column', sa.Text(), nullable=False),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['transform_id'], ['workspace.transforms.id'], name=op.f('fk_transform_errors_transform_id_transforms'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transform_errors')),
    schema='workspace'
    )
    op.create_index('ix_transform_errors_import_line', 'transform_errors', ['import_id', 'line'], unique=False, schema='workspace')


def downgrade() -> None:
    op.drop_index('ix_transform_errors_import_line', table_name='transform_errors', schema='workspace')
    op.drop_table('transform_errors', schema='workspace')
    op.drop_index('ix_transforms_import_id', table_name='transforms', schema='workspace')
    op.drop_table('transforms', schema='workspace')
    op.drop_table('exports', schema='workspace')
