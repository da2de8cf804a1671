"""Dataset rates: reference.rates (app/datasets/rates.py).

Revision ID: d0005
Revises: d0004
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd0005'
down_revision: str | Sequence[str] | None = 'd0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rates',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('carrier', sa.Text(), nullable=False),
    sa.Column('service', sa.Text(), nullable=False),
    sa.Column('origin_postal', sa.Text(), nullable=True),
    sa.Column('dest_postal', sa.Text(), nullable=False),
    sa.Column('weight_min_kg', sa.Numeric(), nullable=True),
    sa.Column('weight_max_kg', sa.Numeric(), nullable=True),
    sa.Column('price', sa.Numeric(), nullable=False),
    sa.Column('currency', sa.Text(), nullable=False),
    sa.Column('effective_date', sa.Date(), nullable=False),
    sa.Column('expires_date', sa.Date(), nullable=True),
    sa.Column('source_import_id', sa.BigInteger(), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    schema='reference'
    )
    op.create_index('uq_rates_customer_key', 'rates', ['customer_id', 'carrier', 'service', 'origin_postal', 'dest_postal', 'weight_min_kg', 'effective_date'], unique=True, schema='reference', postgresql_nulls_not_distinct=True)


def downgrade() -> None:
    op.drop_index('uq_rates_customer_key', table_name='rates', schema='reference', postgresql_nulls_not_distinct=True)
    op.drop_table('rates', schema='reference')
