"""order-proof receiving: snapshot parts as a set, sweep floors, parked data, link-log cap, relink requests

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Every `SET snapshot_due = true` counts as one relink/snapshot request (see schema.links.snapshot_requests).
_SQLITE_TRIGGER = """
CREATE TRIGGER links_snapshot_request AFTER UPDATE OF snapshot_due ON links
FOR EACH ROW WHEN NEW.snapshot_due
BEGIN
    UPDATE links SET snapshot_requests = snapshot_requests + 1 WHERE site = NEW.site;
END
"""
_PG_FUNCTION = """
CREATE FUNCTION federationd_snapshot_request() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.snapshot_requests := OLD.snapshot_requests + 1;
    RETURN NEW;
END
$$
"""
_PG_TRIGGER = """
CREATE TRIGGER links_snapshot_request BEFORE UPDATE OF snapshot_due ON links
FOR EACH ROW WHEN (NEW.snapshot_due) EXECUTE FUNCTION federationd_snapshot_request()
"""


def upgrade() -> None:
    with op.batch_alter_table("inbound_snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("final_part", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("expected", sa.Text(), nullable=True))
    op.create_table(
        "inbound_snapshot_parts",
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("snapshot_id", sa.String(64), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("origin", "snapshot_id", "part", name="pk_inbound_snapshot_parts"),
    )
    op.create_table(
        "inbound_sweeps",
        sa.Column("origin", sa.String(64), primary_key=True),
        sa.Column("finished_id", sa.String(64)),
        sa.Column("finished_epoch", sa.BigInteger()),
        sa.Column("floor_epoch", sa.BigInteger()),
        sa.Column("floor_since", sa.String(10)),
        sa.Column("floor_categories", sa.Text()),
        sa.Column("finished_at", sa.Float()),
    )
    op.create_table(
        "inbound_parked",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("origin", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("content_encoding", sa.String(16)),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
    )
    op.create_index("ix_inbound_parked_origin", "inbound_parked", ["origin", "id"])
    op.create_table(
        "link_log_suppressed",
        sa.Column("site", sa.String(64), nullable=False),
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("site", "day", name="pk_link_log_suppressed"),
    )
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.add_column(sa.Column("snapshot_requests", sa.BigInteger(), server_default="0", nullable=False))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGER)
    else:
        op.execute(_SQLITE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS links_snapshot_request" +
               (" ON links" if op.get_bind().dialect.name == "postgresql" else ""))
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS federationd_snapshot_request()")
    with op.batch_alter_table("links", schema=None) as batch_op:
        batch_op.drop_column("snapshot_requests")
    op.drop_table("link_log_suppressed")
    op.drop_index("ix_inbound_parked_origin", table_name="inbound_parked")
    op.drop_table("inbound_parked")
    op.drop_table("inbound_sweeps")
    op.drop_table("inbound_snapshot_parts")
    with op.batch_alter_table("inbound_snapshots", schema=None) as batch_op:
        batch_op.drop_column("expected")
        batch_op.drop_column("final_part")
