"""Per-category rules applied once, at the outbox, so the wire never carries what must not leave the site.

Pure functions over plain data: no database, no clock (callers pass `now`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.parser import isoparse
from dateutil.rrule import rrulestr

from federationd.errors import RejectedChange

CATEGORIES = ("company", "employee", "department", "position", "group", "schedule", "presence")
# What a release tombstones at the receiver; schedules stay (SPEC 3.3).
RELEASED_CATEGORIES = ("company", "employee", "department", "position", "group")

PRESENCE_FIELDS = frozenset({"date", "status", "destination", "return_at", "remarks"})
RESTRICTED_KEEP = ("start", "end", "all_day", "occurrences")  # plus title "Private" (SPEC 2)
RECURRENCE_WINDOW = timedelta(days=370)
# More than a few per day over the window is not a calendar entry: refuse it rather than ship megabytes.
MAX_OCCURRENCES = 2000

# Credential-looking field names, matched anywhere in the name, in any letter case.
_CREDENTIAL = re.compile(r"password|passwd|passphrase|login_?id|secret|token|totp|otp_?seed|credential|api_?key",
                         re.IGNORECASE)


def check_category(category: str) -> str:
    if category not in CATEGORIES:
        raise RejectedChange("unknown_category", f"unknown category {category!r} (one of {', '.join(CATEGORIES)})")
    return category


def find_credential(data: Any, path: str = "") -> str | None:
    """The dotted path of the first credential-looking field in `data`, at any depth, or None."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = f"{path}.{key}" if path else str(key)
            if _CREDENTIAL.search(str(key)):
                return here
            found = find_credential(value, here)
            if found:
                return found
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found = find_credential(value, f"{path}[{index}]")
            if found:
                return found
    return None


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
