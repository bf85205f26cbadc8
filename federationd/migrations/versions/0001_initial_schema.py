"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 19:27:12.796725
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('bulk_lock',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('holder', sa.String(length=255), nullable=False),
    sa.Column('acquired_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.create_table('inbound_snapshots',
    sa.Column('origin', sa.String(length=64), nullable=False),
    sa.Column('snapshot_id', sa.String(length=64), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('last_part', sa.Integer(), nullable=False),
    sa.Column('counts', sa.Text(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('origin')
    )
    op.create_table('link_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.Column('message', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('link_log', schema=None) as batch_op:
        batch_op.create_index('ix_link_log_at', ['at'], unique=False)
        batch_op.create_index('ix_link_log_site_at', ['site', 'at'], unique=False)

    op.create_table('links',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('company', sa.String(length=255), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('public_url', sa.String(length=1024), nullable=False),
    sa.Column('remote_user', sa.String(length=255), nullable=True),
    sa.Column('remote_password', sa.String(length=255), nullable=True),
    sa.Column('local_user', sa.String(length=255), nullable=True),
    sa.Column('partner_key', sa.Text(), nullable=True),
    sa.Column('token_id', sa.String(length=64), nullable=True),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('sent_seq', sa.BigInteger(), nullable=False),
    sa.Column('snapshot_due', sa.Boolean(), nullable=False),
    sa.Column('send_now', sa.Boolean(), nullable=False),
    sa.Column('sending_since', sa.Float(), nullable=True),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('retry_at', sa.Float(), nullable=True),
    sa.Column('deferred_until', sa.Float(), nullable=True),
    sa.Column('last_send_at', sa.Float(), nullable=True),
    sa.Column('last_receive_at', sa.Float(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('received_epoch', sa.BigInteger(), nullable=False),
    sa.Column('received_seq', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('state_changed_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('site')
    )
    op.create_table('outbox',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('record_id', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('seq')
    )
    op.create_table('receive_history',
    sa.Column('site', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('last_received_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('site', 'category', name='pk_receive_history')
    )
    op.create_table('records',
    sa.Column('origin', sa.String(length=64), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('id', sa.String(length=255), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.Column('deleted', sa.Boolean(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('origin', 'category', 'id', name='pk_records')
    )
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.create_index('ix_records_origin_version', ['origin', 'version'], unique=False)

    op.create_table('site_state',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.String(length=64), nullable=False),
    sa.Column('installation_id', sa.String(length=64), nullable=False),
    sa.Column('epoch', sa.BigInteger(), nullable=False),
    sa.Column('next_seq', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('tokens',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('broker_user', sa.String(length=255), nullable=False),
    sa.Column('requested_by', sa.String(length=255), nullable=False),
    sa.Column('requested_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.Column('used_at', sa.Float(), nullable=True),
    sa.Column('used_by', sa.String(length=64), nullable=True),
    sa.Column('revoked', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade() -> None:
    op.drop_table('tokens')
    op.drop_table('site_state')
    with op.batch_alter_table('records', schema=None) as batch_op:
        batch_op.drop_index('ix_records_origin_version')

    op.drop_table('records')
    op.drop_table('receive_history')
    op.drop_table('outbox')
    op.drop_table('links')
    with op.batch_alter_table('link_log', schema=None) as batch_op:
        batch_op.drop_index('ix_link_log_site_at')
        batch_op.drop_index('ix_link_log_at')

    op.drop_table('link_log')
    op.drop_table('inbound_snapshots')
    op.drop_table('bulk_lock')
