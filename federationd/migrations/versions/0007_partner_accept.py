"""accept rules synced to the partner, and fetch requests: links.accept_sent, partner_accept, access_synced_at,
partner_fetch_at

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

# op.add_column (ALTER TABLE ... ADD COLUMN), not a batch recreate: the trigger on `links` must survive on SQLite.
_LINK_COLUMNS = (
    ('accept_sent', sa.Text()), ('partner_accept', sa.Text()), ('access_synced_at', sa.Float()),
    ('partner_fetch_at', sa.Float()),
)


def upgrade() -> None:
    for name, kind in _LINK_COLUMNS:
        op.add_column('links', sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name, _kind in reversed(_LINK_COLUMNS):
        op.drop_column('links', name)
