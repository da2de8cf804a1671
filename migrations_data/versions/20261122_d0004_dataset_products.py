"""Dataset products: reference.products (app/datasets/products.py).

Revision ID: d0004
Revises: d0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd0004'
down_revision: str | Sequence[str] | None = 'd0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('products',
    sa.Column('customer_id', sa.BigInteger(), nullable=False),
    sa.Column('sku', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('category', sa.Text(), nullable=True),
    sa.Column('weight_kg', sa.Numeric(), nullable=True),
    sa.Column('length_cm', sa.Numeric(), nullable=True),
    sa.Column('width_cm', sa.Numeric(), nullable=True),
    sa.Column('height_cm', sa.Numeric(), nullable=True),
    sa.Column('unit_price', sa.Numeric(), nullable=False),
    sa.Column('currency', sa.Text(), nullable=False),
    sa.Column('barcode', sa.Text(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('source_import_id', sa.BigInteger(), nullable=False),
    sa.Column('loaded_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    schema='reference'
    )
    op.create_index('uq_products_customer_key', 'products', ['customer_id', 'sku'], unique=True, schema='reference', postgresql_nulls_not_distinct=True)


def downgrade() -> None:
    op.drop_index('uq_products_customer_key', table_name='products', schema='reference', postgresql_nulls_not_distinct=True)
    op.drop_table('products', schema='reference')
