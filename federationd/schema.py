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
    LargeBinary,
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
    # What partners were last told of this site's company and site name (site_details.py), and the public
    # endpoint `link change-url` set (a JSON list of amqps URLs; None: broker.public_url of the config).
    Column("announced_company", String(255)),
    Column("announced_name", String(255)),
    Column("public_url", Text),
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

# --- The order-proof receive path (docs/reliability.md, "Receiving") ---------------------------------------------

# inbound_snapshots now tracks a snapshot whatever order its parts arrive in: `last_part` counts the distinct parts
# applied, `counts` sums their records; the final part, whenever it comes, says how many parts there are and the
# counts to expect. The sweep runs once all of them are in and the counts match.
inbound_snapshots.append_column(Column("final_part", Integer))
inbound_snapshots.append_column(Column("expected", Text))  # JSON {category: records} from the final part

# The set of parts of a partner's current snapshot already applied (a redelivered part is not counted twice), with
# each part's own record counts.
inbound_snapshot_parts = Table(
    "inbound_snapshot_parts",
    metadata,
    Column("origin", SITE, nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("part", Integer, nullable=False),
    Column("counts", Text, nullable=False),  # JSON {category: records in this part}
    Column("received_at", Float, nullable=False),
    PrimaryKeyConstraint("origin", "snapshot_id", "part", name="pk_inbound_snapshot_parts"),
)

# Per partner: the newest snapshot finished (a late copy of its parts changes nothing) and the newest one swept.
# What a swept snapshot of epoch E covered holds the partner's whole state as of E: a change stamped with an older
# epoch for a record we do not hold is older than that state and is skipped, so a late message cannot resurrect a
# record the partner deleted before E. The row is also the per-partner lock of the snapshot bookkeeping.
inbound_sweeps = Table(
    "inbound_sweeps",
    metadata,
    Column("origin", SITE, primary_key=True),
    Column("finished_id", String(64)),
    Column("finished_epoch", BigInteger),
    Column("floor_epoch", BigInteger),
    Column("floor_since", String(10)),  # the swept snapshot's schedule window start (ISO date), if bounded
    Column("floor_categories", Text),  # JSON list
    Column("finished_at", Float),
)

# Data (changes, snapshot parts) a partner sent before its link here was `linked` (its `start` still queued or
# being retried): kept as received, applied in the transaction that links the link, dropped if the link stops.
inbound_parked = Table(
    "inbound_parked",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("origin", SITE, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("content_encoding", String(16)),
    Column("body", LargeBinary, nullable=False),
    Column("size", Integer, nullable=False),
    Column("received_at", Float, nullable=False),
)
Index("ix_inbound_parked_origin", inbound_parked.c.origin, inbound_parked.c.id)

# Link-log rows suppressed past the per-partner daily bound (bounds.MAX_LOG_ROWS_PER_DAY), and the one summary row
# that counts them.
link_log_suppressed = Table(
    "link_log_suppressed",
    metadata,
    Column("site", SITE, nullable=False),
    Column("day", Integer, nullable=False),  # UTC days since 1970-01-01
    Column("suppressed", Integer, nullable=False),
    Column("row_id", BigInteger, nullable=False),  # the summary row in link_log
    PrimaryKeyConstraint("site", "day", name="pk_link_log_suppressed"),
)

# Incremented by a database trigger (migration 0005_recv) on every `SET snapshot_due = true`, whoever writes it: a
# sender clears snapshot_due after a snapshot only if this did not move meanwhile, so a relink requested during a
# snapshot is not lost.
links.append_column(Column("snapshot_requests", BigInteger, nullable=False, server_default="0"))

# -- the trusted handshake (verification codes, incarnations, durable revocations) -------------------------------
tokens.append_column(Column("digest", String(64)))  # SHA-256 of the token text: the acceptance must name it
tokens.append_column(Column("for_site", SITE))  # `link request --for SITE`
for _column in (
    Column("code", String(32)),  # the acceptor's verification code (computed here from what it claimed)
    Column("requested_by", String(255)),
    Column("requested_at", Float),
    Column("accepted_by", String(255)),
    Column("accepted_at", Float),
    Column("started_at", Float),
    Column("stop_reason", Text),  # why the link is stopped (a refusal, an expiry, a release), for status
    Column("relink_after", Float),  # a partner's relink request waits until then (rate limit, bulk lock)
    Column("partner_relink_at", Float),  # when a partner's relink request last caused a snapshot
):
    links.append_column(_column)

# Broker users to delete and queues to purge, written in the same transaction as the state change that makes
# them due; deleted only once the management API confirmed (retried by housekeeping until then).
revocations = Table(
    "revocations",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # user | queue
    Column("name", String(255), nullable=False),  # the broker user, or the partner whose inbound queue to purge
    Column("incarnation", String(64)),  # queue: purged only while the link is still this stopped incarnation
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("last_error", Text),
)

# -- access settings synced both ways, and fetch requests (migration 0007) ---------------------------------------
for _column in (
    Column("accept_sent", Text),  # our accept policy for this partner's employees as last queued to it (JSON)
    Column("partner_accept", Text),  # the partner's accept policy for our employees, as it told us (JSON)
    Column("access_synced_at", Float),  # when the partner's broker last confirmed our visit/accept rules
    Column("partner_fetch_at", Float),  # when a partner's `fetch` request last caused a send now
):
    links.append_column(_column)
