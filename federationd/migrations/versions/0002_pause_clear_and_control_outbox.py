"""pause, clear and control outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:43:00.335552
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('control_outbox',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('control_outbox', schema=None) as batch_op:
        batch_op.create_index('ix_control_outbox_site', ['site', 'id'], unique=False)

    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('hold_seq', sa.BigInteger(), server_default='0', nullable=False))

    with op.batch_alter_table('site_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paused', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('site_state', schema=None) as batch_op:
        batch_op.drop_column('paused')

    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_column('hold_seq')

    with op.batch_alter_table('control_outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_control_outbox_site')

    op.drop_table('control_outbox')
