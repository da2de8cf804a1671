"""Exports may neutralize spreadsheet formulas: the choice is kept with the export, for its job.

Revision ID: d0006_export_formulas
Revises: d0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd0006_export_formulas'
down_revision: str | Sequence[str] | None = 'd0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        'exports',
        sa.Column(
            'neutralize_formulas', sa.Boolean(), server_default=sa.text('false'), nullable=False
        ),
        schema='workspace',
    )


def downgrade() -> None:
    op.drop_column('exports', 'neutralize_formulas', schema='workspace')
