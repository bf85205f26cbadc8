"""Per-category rules applied once, at the outbox, so the wire never carries what must not leave the site.

Pure functions over plain data: no database, no clock (callers pass `now`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.parser import isoparse
from dateutil.rrule import rrulestr

from federationd.bounds import MAX_RECORD_BYTES, clip
from federationd.errors import RejectedChange

CATEGORIES = ("company", "employee", "department", "position", "group", "schedule", "presence")
# What a release tombstones at the receiver; schedules stay (docs/operations.md, "Release").
RELEASED_CATEGORIES = ("company", "employee", "department", "position", "group")

PRESENCE_FIELDS = frozenset({"date", "status", "destination", "return_at", "remarks"})
RESTRICTED_KEEP = ("start", "end", "all_day", "occurrences")  # plus title "Private" (docs/protocol.md, categories)
RECURRENCE_WINDOW = timedelta(days=370)
# More than a few per day over the window is not a calendar entry: refuse it rather than ship megabytes.
MAX_OCCURRENCES = 2000

# Credential field names, matched EXACTLY, at any depth, ignoring letter case and the separators `_`, `-`
# and `.` (so `loginId`, `LOGIN_ID` and `login-id` are one name): `secretary` or `tokens_used` are honest fields.
# docs/reliability.md lists them; a change carrying one is refused at the outbox and skipped by a receiver.
CREDENTIAL_FIELDS = (
    "password", "passwd", "password_hash", "password_salt", "passphrase", "pin_code",
    "login_id", "login_name", "login_password",
    "secret", "secret_key", "client_secret", "shared_secret",
    "token", "access_token", "refresh_token", "auth_token", "session_token", "id_token", "bearer_token",
    "api_token", "totp", "totp_secret", "totp_seed", "otp_secret", "otp_seed", "mfa_secret", "mfa_seed",
    "two_factor_secret", "recovery_codes",
    "api_key", "private_key", "credential", "credentials",
)


_SEPARATORS = str.maketrans("", "", "-_.")


def _normal(name: str) -> str:
    return name.translate(_SEPARATORS).casefold()


_CREDENTIAL_NAMES = frozenset(_normal(name) for name in CREDENTIAL_FIELDS)
# Key names already found not to be credentials: a bulk transfer repeats the same few dozen names in every record,
# so most dicts are cleared by one C-level subset test. Bounded in count and in name length (what a partner sends
# cannot grow it without end); a name not kept is simply checked again.
_CLEAN_KEYS: set[str] = set()
_CLEAN_KEYS_MAX = 4096
_CLEAN_KEY_CHARS = 64
_LEAVES = frozenset({str, int, float, bool, type(None)})


def is_credential(name: object) -> bool:
    return isinstance(name, str) and _normal(name) in _CREDENTIAL_NAMES


def check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise RejectedChange("unknown_category", f"unknown category {category!r} (one of {', '.join(CATEGORIES)})")
    return category


def find_credential(data: Any, path: str = "") -> str | None:
    """The dotted path of the first credential field (CREDENTIAL_FIELDS) in `data`, at any depth, or None.

    The one check of the outbox (refuse) and of a receiver (skip the record). A fast pass answers whether there is
    one at all; the path is built only when there is."""
    return _path_of(data, path) if _holds_credential(data) else None


def _clean_keys(keys: Any) -> bool:
    """Whether none of `keys` is a credential name (and remember the ones that are not)."""
    if keys <= _CLEAN_KEYS:
        return True
    for key in keys:
        if key in _CLEAN_KEYS:
            continue
        if is_credential(key):
            return False
        if type(key) is str and len(key) <= _CLEAN_KEY_CHARS and len(_CLEAN_KEYS) < _CLEAN_KEYS_MAX:
            _CLEAN_KEYS.add(key)
    return True


def _holds_credential(data: Any) -> bool:
    kind = type(data)
    if kind in _LEAVES:
        return False
    if kind is dict or (kind is not list and isinstance(data, Mapping)):
        if not _clean_keys(data.keys()):
            return True
        values = data.values()
    elif isinstance(data, list):
        values = data
    else:
        return False
    # A loop, not `any()` over a generator: this runs for every record received, and most values are leaves.
    for value in values:  # noqa: SIM110
        if type(value) not in _LEAVES and _holds_credential(value):
            return True
    return False


def _path_of(data: Any, path: str) -> str | None:
    """The slow walk of `find_credential`, with the path of every step."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = f"{path}.{clip(key)}" if path else clip(key)
            if is_credential(key):
                return here
            found = _path_of(value, here)
            if found:
                return found
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found = _path_of(value, f"{path}[{index}]")
            if found:
                return found
    return None


def check_size(record_id: str, data_json: str) -> None:
    """Refuse a record whose data, as canonical JSON, is larger than MAX_RECORD_BYTES (the bytes per record bound:
    at the outbox the host gets this error; a receiver skips only that record)."""
    if len(data_json) * 4 <= MAX_RECORD_BYTES:  # at most 4 bytes a character: cannot be over, skip the encoding
        return
    size = len(data_json.encode())
    if size > MAX_RECORD_BYTES:
        raise RejectedChange("oversized_record", f"its data is {size:,} bytes of JSON, over the bound of "
                             f"{MAX_RECORD_BYTES:,} bytes per record", record_id=record_id)


def prepare(category: str, data: Mapping[str, Any], today: date) -> dict[str, Any]:
    """What of a home change is stored and sent; raise RejectedChange for what must never leave the site."""
    check_category(category)
    if not isinstance(data, Mapping):
        raise RejectedChange("invalid_data", "data must be a JSON object")
    if category == "presence":  # only these fields ever leave the site; the rest is dropped, not refused
        data = {key: value for key, value in data.items() if key in PRESENCE_FIELDS}
    field = find_credential(data)
    if field is not None:
        raise RejectedChange("credential_field", f"{category} data carries a credential field {field!r}: refused")
    if category == "presence":
        return dict(data)
    if category == "schedule":
        return prepare_schedule(dict(data), today)
    return dict(data)


def prepare_schedule(data: dict[str, Any], today: date) -> dict[str, Any]:
    """Expand a recurrence into `occurrences` within the window; reduce a restricted schedule to a busy block."""
    if data.get("recurrence"):
        data["occurrences"] = occurrences(data, today)
    else:
        data.pop("occurrences", None)
    if data.get("restricted"):
        data = {key: data[key] for key in RESTRICTED_KEEP if key in data}
        data["title"] = "Private"
    return data


def _when(value: Any, field: str) -> datetime:
    try:
        return isoparse(str(value))
    except (ValueError, OverflowError):
        raise RejectedChange("invalid_data", f"schedule {field} {value!r} is not an ISO 8601 time") from None


def occurrences(data: Mapping[str, Any], today: date) -> list[dict[str, str]]:
    """The `{start, end}` of a recurring schedule's occurrences inside the sync window.

    The window runs from the 1st of the previous month (what a relink resends) to 370 days after `today`; the
    rolling job re-runs this every 7 days so the window moves with the calendar."""
    if "start" not in data:
        raise RejectedChange("invalid_data", "a recurring schedule needs a start")
    start = _when(data["start"], "start")
    end = _when(data.get("end", data["start"]), "end")
    if data.get("timezone"):  # an IANA zone: expand in its wall-clock time, so DST moves the offset, not the hour
        zone = _zone(data["timezone"])
        start = start.replace(tzinfo=zone) if start.tzinfo is None else start.astimezone(zone)
        end = end.replace(tzinfo=zone) if end.tzinfo is None else end.astimezone(zone)
    if (start.tzinfo is None) != (end.tzinfo is None):
        raise RejectedChange("invalid_data", "schedule start and end must both have a UTC offset or both have none")
    length = end - start
    try:
        rule = rrulestr(str(data["recurrence"]), dtstart=start)
    except (ValueError, TypeError):
        raise RejectedChange("invalid_data", f"schedule recurrence {data['recurrence']!r} is not an RRULE") from None
    horizon = datetime.combine(today + RECURRENCE_WINDOW, datetime.max.time())
    since = datetime.combine(window_start(today), datetime.min.time())
    if start.tzinfo is not None:
        horizon, since = horizon.replace(tzinfo=start.tzinfo), since.replace(tzinfo=start.tzinfo)
    result: list[dict[str, str]] = []
    for when in rule.xafter(max(start, since), inc=True):  # lazily: a SECONDLY rule must not run for minutes
        if when > horizon:
            break
        if len(result) == MAX_OCCURRENCES:
            raise RejectedChange("invalid_data", f"schedule recurrence {data['recurrence']!r} has more than "
                                 f"{MAX_OCCURRENCES} occurrences in the {RECURRENCE_WINDOW.days}-day window")
        result.append({"start": when.isoformat(), "end": (when + length).isoformat()})
    return result


def _zone(name: object) -> ZoneInfo:
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise RejectedChange("invalid_data", f"schedule timezone {name!r} is not an IANA time zone") from None


def window_start(today: date) -> date:
    """The 1st day of the previous month: where schedule windows (and a relink's schedule resend) begin."""
    first = today.replace(day=1)
    return (first - timedelta(days=1)).replace(day=1)


def schedule_in_window(data: dict[str, object], since: date) -> bool:
    """Whether a schedule ends on or after `since` (or has an occurrence that does)."""
    listed = data.get("occurrences")
    ends = [str(o.get("end", "")) for o in listed if isinstance(o, dict)] if isinstance(listed, list) else []
    ends.append(str(data.get("end") or data.get("start") or ""))
    return any(end[:10] >= since.isoformat() for end in ends if end)
