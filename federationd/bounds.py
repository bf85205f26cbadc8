"""Every bound on what a partner can make us hold, parse, store or log, in one place (docs/reliability.md).

Each bound is named in the refusal that enforces it, so an operator reading a log line or a rejection reason knows
which limit was hit and how large it is. Pure constants and one pure helper: no I/O.
"""

from __future__ import annotations

MIB = 1024 * 1024

# A message body after decompression. Inflating stops at this many bytes plus one, so a gzip bomb never makes us
# allocate more than the bound (wire._inflate).
MAX_BODY_BYTES = 16 * MIB
# A control message (handshake, release, relink, change-url, policies) is small; 10 MB of strings in one is abuse.
MAX_CONTROL_BYTES = 1 * MIB
# JSON values (keys, numbers, strings, containers) in one body, counted from the raw text before parsing: parsing
# builds one Python object per value, so this caps the memory a small body of `[{},{},...]` can cost.
MAX_JSON_VALUES = 1_000_000
# Changes in one `changes` or `snapshot` message (a sender's `transport.batch_records` may not exceed it).
MAX_CHANGES = 5_000
# One record's data as canonical JSON (sorted keys, compact, UTF-8): refused at capture, skipped at a receiver.
MAX_RECORD_BYTES = 1 * MIB
# The largest `transport.batch_bytes`: a message is at most this plus one record, under RabbitMQ 4's default
# 16 MiB `max_message_size` and under MAX_BODY_BYTES at the receiver.
MAX_BATCH_BYTES = 8 * MIB
# Partner-controlled text in a log line or a link-log row.
MAX_LOGGED_CHARS = 200
# Link-log rows per partner per UTC day; past it one summary row counts what was suppressed.
MAX_LOG_ROWS_PER_DAY = 1_000
# Data that arrived before its link was `linked` is parked in the database until `start` is applied.
MAX_PARKED_MESSAGES = 1_000
MAX_PARKED_BYTES = 256 * MIB


def clip(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """`value` as text of at most about `limit` characters, saying how much was cut: the one way a
    partner-controlled string reaches a log line, a link-log row or an error message."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def quoted(value: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """`clip` of the value's repr: for names and ids quoted in a message."""
    return clip(repr(value), limit)
