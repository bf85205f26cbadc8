"""partner watermark

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 19:59:17.324527
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('watermark_epoch', sa.BigInteger(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('watermark_seq', sa.BigInteger(), server_default='0', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_column('watermark_seq')
        batch_op.drop_column('watermark_epoch')

