"""Transforms keep what they replace: a version stamp on each reference row, a history table
per dataset filled by triggers, and the revert's links on workspace.transforms.

- `reference.<dataset>.source_transform_id`: the transform whose version the row is (NULL for
  rows loaded before this revision).
- `reference.<dataset>_history`: the rows as they were before a transform updated them (or a
  revert deleted or put them back), with the transform and how (`op`).
- Two statement-level triggers per dataset table, AFTER UPDATE and AFTER DELETE, copy the old
  rows (the statement's transition table) into the history, under the transform named by the
  transaction's `backoffice.transform_id` setting. Without it (a purge, a hand-made fix) they
  record nothing. Inserts have no trigger: an all-new transform pays nothing for history.
- `workspace.transforms.reverts_id` / `reverted_by_id`: a revert is a transform record of its
  own, pointing at the transform it undid; `keeps_history`: false for the transforms published
  before, which cannot be reverted.

Revision ID: d0008_transform_history
Revises: d0007_import_lines
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd0008_transform_history'
down_revision: str | Sequence[str] | None = 'd0007_import_lines'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The datasets' fields and keys as they are at this revision.
DATASETS = {
    'products': (
        [
            ('sku', sa.Text), ('name', sa.Text), ('category', sa.Text),
            ('weight_kg', sa.Numeric), ('length_cm', sa.Numeric), ('width_cm', sa.Numeric),
            ('height_cm', sa.Numeric), ('unit_price', sa.Numeric), ('currency', sa.Text),
            ('barcode', sa.Text), ('active', sa.Boolean),
            ('updated_at', lambda: sa.DateTime(timezone=True)),
        ],
        ['sku'],
    ),
    'rates': (
        [
            ('carrier', sa.Text), ('service', sa.Text), ('origin_postal', sa.Text),
            ('dest_postal', sa.Text), ('weight_min_kg', sa.Numeric),
            ('weight_max_kg', sa.Numeric), ('price', sa.Numeric), ('currency', sa.Text),
            ('effective_date', sa.Date), ('expires_date', sa.Date),
        ],
        ['carrier', 'service', 'origin_postal', 'dest_postal', 'weight_min_kg', 'effective_date'],
    ),
}

# One function for every dataset: the old rows, column by column by name, into the table's
# `_history` twin. The column list is read from the catalog once per statement (a transform
# runs a few statements, not one per row).
KEEP_HISTORY = """
CREATE FUNCTION reference.keep_history() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  transform text := current_setting('backoffice.transform_id', true);
  columns text;
BEGIN
  IF transform IS NULL OR transform = '' THEN
    RETURN NULL;
  END IF;
  SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
    FROM pg_attribute WHERE attrelid = TG_RELID AND attnum > 0 AND NOT attisdropped;
  EXECUTE format(
    'INSERT INTO %I.%I (transform_id, op, %s) SELECT $1, $2, %s FROM old_rows',
    TG_TABLE_SCHEMA, TG_TABLE_NAME || '_history', columns, columns)
  USING transform::bigint, lower(TG_OP);
  RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.execute(KEEP_HISTORY)
    for name, (fields, key) in DATASETS.items():
        op.add_column(
            name, sa.Column('source_transform_id', sa.BigInteger(), nullable=True), schema='reference'
        )
        op.create_table(
            f'{name}_history',
            sa.Column('id', sa.BigInteger(), sa.Identity(always=True), nullable=False),
            sa.Column('transform_id', sa.BigInteger(), nullable=False),
            sa.Column('op', sa.Text(), nullable=False),
            sa.Column('customer_id', sa.BigInteger(), nullable=False),
            *(sa.Column(field, kind(), nullable=True) for field, kind in fields),
            sa.Column('source_import_id', sa.BigInteger(), nullable=True),
            sa.Column('loaded_at', sa.DateTime(timezone=True), nullable=True),
            sa.Column('source_transform_id', sa.BigInteger(), nullable=True),
            schema='reference',
        )
        op.create_index(
            f'ix_{name}_history_transform_id', f'{name}_history', ['transform_id'],
            schema='reference',
        )
        op.create_index(
            f'ix_{name}_history_row', f'{name}_history', ['customer_id', *key, 'id'],
            schema='reference',
        )
        for event in ('UPDATE', 'DELETE'):
            op.execute(
                f'CREATE TRIGGER {name}_history_{event.lower()} AFTER {event} ON reference.{name} '
                'REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT '
                'EXECUTE FUNCTION reference.keep_history()'
            )
    for column in ('reverts_id', 'reverted_by_id'):  # workspace.transforms.id, both
        op.add_column(
            'transforms', sa.Column(column, sa.BigInteger(), nullable=True), schema='workspace'
        )
    # Transforms published before this revision kept no history: they cannot be reverted.
    op.add_column(
        'transforms',
        sa.Column('keeps_history', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        schema='workspace',
    )
    op.alter_column(
        'transforms', 'keeps_history', server_default=sa.text('true'), schema='workspace'
    )


def downgrade() -> None:
    op.drop_column('transforms', 'keeps_history', schema='workspace')
    op.drop_column('transforms', 'reverted_by_id', schema='workspace')
    op.drop_column('transforms', 'reverts_id', schema='workspace')
    for name in DATASETS:
        for event in ('update', 'delete'):
            op.execute(f'DROP TRIGGER IF EXISTS {name}_history_{event} ON reference.{name}')
        op.drop_table(f'{name}_history', schema='reference')
        op.drop_column(name, 'source_transform_id', schema='reference')
    op.execute('DROP FUNCTION IF EXISTS reference.keep_history()')
