"""The database tables, as SQLAlchemy Core metadata (the migrations in `migrations/` create them).

Times are stored as REAL/DOUBLE unix seconds (UTC), named `..._at`: one representation on SQLite and
PostgreSQL, compared and subtracted without time-zone surprises; the CLI renders them as ISO 8601 UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    false,
)

metadata = MetaData()

SITE = String(64)
CATEGORY = String(32)
RECORD_ID = String(255)

# One row (id = 1): who this database belongs to and the origin's counters. Version numbers are handed out by
# `UPDATE ... SET next_seq = next_seq + n RETURNING`, whose row lock also makes commit order equal version order,
# so a per-link "sent up to version N" watermark can never skip a change committed late.
site_state = Table(
    "site_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("site_id", SITE, nullable=False),
    Column("installation_id", String(64), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("next_seq", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("paused", Boolean, nullable=False, server_default=false()),  # `federationd pause` (whole site)
    Column("rolled_at", Float),  # the last run of the rolling job that extends recurring schedules' windows
)

# Every record this site knows: its own (origin = home) and replicas of partners' records.
records = Table(
    "records",
    metadata,
    Column("origin", SITE, nullable=False),
    Column("category", CATEGORY, nullable=False),
    Column("id", RECORD_ID, nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("data", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
    # Home recurring schedules only: the host's own data (rule included), from which the rolling job recomputes
    # the occurrences window. Never sent: `data` is what partners get.
    Column("source", Text),
    PrimaryKeyConstraint("origin", "category", "id", name="pk_records"),
)
Index("ix_records_origin_version", records.c.origin, records.c.version)

# The transactional outbox: one row per home change, written in the host's transaction. A link has sent every
# change up to its `sent_seq`; rows every live link has sent are pruned.
outbox = Table(
    "outbox",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("category", CATEGORY, nullable=False),
    Column("record_id", RECORD_ID, nullable=False),
    Column("created_at", Float, nullable=False),
)

links = Table(
    "links",
    metadata,
    Column("site", SITE, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("role", String(16), nullable=False),  # requester | acceptor: who issued the token
    Column("company", String(255), nullable=False, default=""),
    Column("name", String(255), nullable=False, default=""),
    Column("public_url", String(1024), nullable=False, default=""),
    Column("remote_user", String(255)),  # our user on the partner's broker (fed.P.H)
    Column("remote_password", String(255)),  # its password: we must present it, so it is stored as is
    Column("local_user", String(255)),  # the partner's user on our broker (fed.H.P); its password is not kept
    Column("partner_key", Text),  # the partner's Ed25519 public key (base64), for sign-in tickets
    Column("token_id", String(64)),  # the token that started this link
    Column("paused", Boolean, nullable=False, default=False),  # set by `federationd pause SITE`
    Column("sent_seq", BigInteger, nullable=False, default=0),
    Column("snapshot_due", Boolean, nullable=False, default=False),
    Column("send_now", Boolean, nullable=False, default=False),
    Column("sending_since", Float),
    Column("failures", Integer, nullable=False, default=0),  # consecutive failed sends (0: the partner is up)
    Column("retry_at", Float),  # after a failure, no send before this (capped exponential backoff)
    Column("deferred_until", Float),  # a due send found the bulk lock held: wait busy_retry
    # `federationd clear`: no send is scheduled until a change newer than this outbox seq (or send-now) arrives;
    # then everything pending goes, nothing cleared is lost.
    Column("hold_seq", BigInteger, nullable=False, server_default="0"),
    Column("visit_sent", Text),  # our visit policy for this partner as last queued to it (JSON)
    Column("partner_visit", Text),  # the partner's visit policy for us, as it told us (JSON; NULL: everybody)
    # The newest (epoch, version) of ours the partner says it holds. Newer than this database's own counters:
    # the database went back in time (restored from an older backup) and needs a relink.
    Column("watermark_epoch", BigInteger, nullable=False, server_default="0"),
    Column("watermark_seq", BigInteger, nullable=False, server_default="0"),
    Column("last_send_at", Float),
    Column("last_receive_at", Float),
    Column("last_error", Text),
    Column("received_epoch", BigInteger, nullable=False, default=0),
    Column("received_seq", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
    Column("state_changed_at", Float, nullable=False),
)

# Link tokens this site issued. The one-time credential itself is not stored: it lives only in the token and
# in the broker; we keep what is needed to revoke it and to refuse a second use.
tokens = Table(
    "tokens",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("broker_user", String(255), nullable=False),
    Column("requested_by", String(255), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("used_at", Float),
    Column("used_by", SITE),
    Column("revoked", Boolean, nullable=False, default=False),
)

link_log = Table(
    "link_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("site", SITE, nullable=False),
    Column("direction", String(8), nullable=False),  # send | receive
    Column("category", CATEGORY),
    Column("message", Text, nullable=False),
)
Index("ix_link_log_at", link_log.c.at)
Index("ix_link_log_site_at", link_log.c.site, link_log.c.at)

receive_history = Table(
    "receive_history",
    metadata,
    Column("site", SITE, nullable=False),
    Column("category", CATEGORY, nullable=False),
    Column("last_received_at", Float, nullable=False),
    PrimaryKeyConstraint("site", "category", name="pk_receive_history"),
)

# Progress of a snapshot being received from a partner, so the final part can check the counts before sweeping.
inbound_snapshots = Table(
    "inbound_snapshots",
    metadata,
    Column("origin", SITE, primary_key=True),
    Column("snapshot_id", String(64), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("last_part", Integer, nullable=False),  # parts arrive in order; a redelivered one is not counted twice
    Column("counts", Text, nullable=False),  # JSON {category: records received so far}
    Column("started_at", Float, nullable=False),
)

# Control messages waiting to be delivered to a partner (release, relink, change-url, visit policy), in order,
# before any data. Handshake messages are not here: they are sent synchronously by the verb that makes them.
control_outbox = Table(
    "control_outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("site", SITE, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("body", Text, nullable=False),  # JSON: the control's fields besides kind
    Column("created_at", Float, nullable=False),
)
Index("ix_control_outbox_site", control_outbox.c.site, control_outbox.c.id)

# Sign-in tickets already redeemed here (single use); rows are purged once the ticket has expired.
used_tickets = Table(
    "used_tickets",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("origin", SITE, nullable=False),
    Column("employee", RECORD_ID, nullable=False),
    Column("used_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# Held by bulk jobs (CSV import): a send that falls due while it is held waits `busy_retry`.
bulk_lock = Table(
    "bulk_lock",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("acquired_at", Float, nullable=False),
)
