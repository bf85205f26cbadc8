"""what this site last told its partners about itself: site_state.announced_company, announced_name, and the
public endpoint `link change-url` set (public_url, a JSON list of amqps URLs)

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

_COLUMNS = (
    ('announced_company', sa.String(length=255)), ('announced_name', sa.String(length=255)),
    ('public_url', sa.Text()),
)


def upgrade() -> None:
    for name, kind in _COLUMNS:
        op.add_column('site_state', sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('site_state') as batch:
        for name, _kind in reversed(_COLUMNS):
            batch.drop_column(name)
