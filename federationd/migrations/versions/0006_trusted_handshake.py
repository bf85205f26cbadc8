"""trusted handshake: verification codes, incarnations, durable revocations, relink rate limit

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

_LINK_COLUMNS = (
    ('code', sa.String(32)), ('requested_by', sa.String(255)), ('requested_at', sa.Float()),
    ('accepted_by', sa.String(255)), ('accepted_at', sa.Float()), ('started_at', sa.Float()),
    ('stop_reason', sa.Text()), ('relink_after', sa.Float()), ('partner_relink_at', sa.Float()),
)


def upgrade() -> None:
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest', sa.String(64), nullable=True))
        batch_op.add_column(sa.Column('for_site', sa.String(64), nullable=True))
    with op.batch_alter_table('links', schema=None) as batch_op:
        for name, kind in _LINK_COLUMNS:
            batch_op.add_column(sa.Column(name, kind, nullable=True))
    op.create_table(
        'revocations',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
        sa.Column('kind', sa.String(16), nullable=False),
        sa.Column('name', sa.String(255), nullable=False),
        sa.Column('incarnation', sa.String(64), nullable=True),
        sa.Column('created_at', sa.Float(), nullable=False),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )


def downgrade() -> None:
    op.drop_table('revocations')
    with op.batch_alter_table('links', schema=None) as batch_op:
        for name, _kind in reversed(_LINK_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table('tokens', schema=None) as batch_op:
        batch_op.drop_column('for_site')
        batch_op.drop_column('digest')
