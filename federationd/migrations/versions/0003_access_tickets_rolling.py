"""access policy, tickets and rolling schedules

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 19:52:00.880177
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('used_tickets',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('origin', sa.String(length=64), nullable=False),
    sa.Column('employee', sa.String(length=255), nullable=False),
    sa.Column('used_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('visit_sent', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('partner_visit', sa.Text(), nullable=True))

    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source', sa.Text(), nullable=True))

    with op.batch_alter_table('site_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rolled_at', sa.Float(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('site_state', schema=None) as batch_op:
        batch_op.drop_column('rolled_at')

    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.drop_column('source')

    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_column('partner_visit')
        batch_op.drop_column('visit_sent')

    op.drop_table('used_tickets')
