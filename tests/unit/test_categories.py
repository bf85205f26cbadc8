"""Unit tests for federationd.categories: what of a home change may be stored and sent (SPEC 2).

Credentials are refused at any depth and in any letter case; presence keeps five fields; a restricted schedule
becomes a busy block; a recurring schedule carries its occurrences from the 1st of the previous month to 370 days
after today, and none later.
"""

from __future__ import annotations

import copy
import itertools
import json
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd.categories import (
    CATEGORIES,
    RECURRENCE_WINDOW,
    check_category,
    find_credential,
    occurrences,
    prepare,
    schedule_in_window,
    window_start,
)
from federationd.config import TransportSection
from federationd.errors import RejectedChange

TODAY = date(2026, 3, 15)
HORIZON = TODAY + timedelta(days=370)  # 2027-03-20


def refused(category: str, data: Any, today: date = TODAY) -> RejectedChange:
    with pytest.raises(RejectedChange) as caught:
        prepare(category, data, today)
    return caught.value


# -- categories --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("category", CATEGORIES)
def test_known_categories(category: str) -> None:
    assert check_category(category) == category


@pytest.mark.parametrize("category", ["employees", "Employee", "", "user", "presence "])
def test_unknown_category(category: str) -> None:
    exc = refused(category, {"name": "x"})
    assert exc.reason == "unknown_category"
    assert repr(category) in str(exc)


@pytest.mark.parametrize("data", [[], "name", None, 3])
def test_data_must_be_an_object(data: Any) -> None:
    assert refused("employee", data).reason == "invalid_data"


@pytest.mark.parametrize("category", ["company", "employee", "department", "position", "group"])
def test_plain_categories_pass_through_unchanged(category: str) -> None:
    data = {"name": "Sato", "kana": "さとう", "departments": ["sales"], "nested": {"order": 3, "list": [1, {"a": 2}]}}
    before = copy.deepcopy(data)
    assert prepare(category, data, TODAY) == data
    assert data == before  # the caller's object is not modified


# -- credentials -------------------------------------------------------------------------------------------------

CREDENTIALS = [
    # (category, data, path named in the error)
    ("employee", {"name": "a", "password": "x"}, "password"),
    ("employee", {"Password_Hash": "x"}, "Password_Hash"),
    ("employee", {"PASSWORD": "x"}, "PASSWORD"),
    ("employee", {"login_id": "sato"}, "login_id"),
    ("employee", {"LoginId": "sato"}, "LoginId"),
    ("employee", {"loginid": "sato"}, "loginid"),
    ("employee", {"secret": "x"}, "secret"),
    ("employee", {"TotpSecret": "x"}, "TotpSecret"),
    ("employee", {"totp": "x"}, "totp"),
    ("employee", {"token": "x"}, "token"),
    ("employee", {"api_token": "x"}, "api_token"),
    ("employee", {"Refresh-Token": "x"}, "Refresh-Token"),
    ("employee", {"passwd": "x"}, "passwd"),
    ("employee", {"api_key": "x"}, "api_key"),
    ("employee", {"profile": {"auth": {"Token": "x"}}}, "profile.auth.Token"),
    ("employee", {"accounts": [{"name": "a"}, {"passwd": "x"}]}, "accounts[1].passwd"),
    ("employee", {"a": [[{"b": {"Secret": 1}}]]}, "a[0][0].b.Secret"),
    ("employee", {"password": None}, "password"),  # refused whatever the value, even empty
    ("group", {"name": "g", "members": [{"id": "e-1", "login_id": "x"}]}, "members[0].login_id"),
    ("department", {"name": "d", "meta": {"TOTP": "123456"}}, "meta.TOTP"),
    ("company", {"name": "c", "smtp": {"password": "x"}}, "smtp.password"),
    ("position", {"name": "p", "credentials": []}, "credentials"),
    ("schedule", {"title": "t", "start": "2026-03-20T09:00:00", "secret": "x"}, "secret"),
    ("schedule", {"title": "t", "start": "2026-03-20T09:00:00", "restricted": True, "token": "x"}, "token"),
    ("presence", {"status": "out", "remarks": {"token": "x"}}, "remarks.token"),
]


@pytest.mark.parametrize(("category", "data", "path"), CREDENTIALS, ids=[c[2] for c in CREDENTIALS])
def test_credential_fields_are_refused_at_any_depth(category: str, data: dict[str, Any], path: str) -> None:
    exc = refused(category, data)
    assert exc.reason == "credential_field"
    assert repr(path) in str(exc)
    assert find_credential(data) == path


@pytest.mark.parametrize("data", [
    {"name": "Sato", "email": "sato@example.com", "phone": "03-0000-0000", "position": "manager"},
    {"note": "my password is not here"},           # values are not field names
    {"tags": ["token", "secret"]},                  # list items that are strings are values too
    {"passage": 1, "pass": 2, "login": 3, "otp": 4},
    {"secretary": "Suzuki", "tokens_used": 3, "password_policy_url": "https://x", "last_login_at": "today"},
    {"profile": {"secretary": {"name": "Ito"}, "api_keys_count": 2, "token_bucket": 1}},
])
def test_lookalikes_are_not_credentials(data: dict[str, Any]) -> None:
    assert find_credential(data) is None
    assert prepare("employee", data, TODAY) == data


@settings(max_examples=100)
@given(name=st.sampled_from(["password", "login_id", "secret", "token", "totp"]),
       flips=st.lists(st.booleans(), min_size=8, max_size=8),
       depth=st.integers(0, 4), in_list=st.booleans())
def test_credentials_in_any_case_at_any_depth(name: str, flips: list[bool], depth: int, in_list: bool) -> None:
    field = "".join(c.upper() if flip else c for c, flip in zip(name, flips + [False] * len(name), strict=False))
    data: Any = {field: "x"}
    for level in range(depth):
        data = {f"level{level}": [data] if in_list else data}
    exc = refused("employee", data)
    assert exc.reason == "credential_field"
    assert field in str(exc)


# -- presence ----------------------------------------------------------------------------------------------------

def test_presence_keeps_only_its_five_fields() -> None:
    data = {"date": "2026-03-15", "status": "out", "destination": "Osaka", "return_at": "15:00", "remarks": "r",
            "employee_name": "Sato", "ip": "192.0.2.1", "internal": {"x": 1}}
    assert prepare("presence", data, TODAY) == {"date": "2026-03-15", "status": "out", "destination": "Osaka",
                                                "return_at": "15:00", "remarks": "r"}


def test_presence_drops_a_credential_named_extra_field_instead_of_refusing() -> None:
    # An extra field is dropped before anything else is looked at (SPEC 2: "any other field is dropped").
    assert prepare("presence", {"status": "in", "password": "x"}, TODAY) == {"status": "in"}


def test_presence_with_no_known_fields_is_empty() -> None:
    assert prepare("presence", {"foo": 1}, TODAY) == {}


# -- restricted schedules ----------------------------------------------------------------------------------------

RESTRICTED = {"title": "Board meeting", "start": "2026-03-20T09:00:00+09:00", "end": "2026-03-20T10:00:00+09:00",
              "all_day": False, "place": "Room 1", "attendees": ["e-1", "e-2"], "notes": "layoffs",
              "restricted": True}


def test_restricted_schedule_becomes_a_busy_block() -> None:
    block = prepare("schedule", dict(RESTRICTED), TODAY)
    assert block["title"] == "Private"
    assert (block["start"], block["end"], block["all_day"]) == (RESTRICTED["start"], RESTRICTED["end"], False)
    for dropped in ("place", "attendees", "notes"):
        assert dropped not in block
    assert "Board meeting" not in json.dumps(block) and "Room 1" not in json.dumps(block)


def test_restricted_recurring_schedule_keeps_its_occurrences() -> None:
    block = prepare("schedule", {**RESTRICTED, "recurrence": "FREQ=WEEKLY"}, TODAY)
    assert block["title"] == "Private"
    assert len(block["occurrences"]) > 40
    assert "place" not in block and "attendees" not in block


def test_restricted_schedule_keeps_nothing_else() -> None:
    block = prepare("schedule", {**RESTRICTED, "recurrence": "FREQ=WEEKLY"}, TODAY)
    assert set(block) <= {"start", "end", "all_day", "occurrences", "title", "restricted"}


@pytest.mark.parametrize("flag", [False, None, 0])
def test_unrestricted_schedule_keeps_its_fields(flag: Any) -> None:
    data = {**RESTRICTED, "restricted": flag}
    assert prepare("schedule", data, TODAY) == data


# -- recurrence expansion ----------------------------------------------------------------------------------------

def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_window_constants() -> None:
    assert timedelta(days=370) == RECURRENCE_WINDOW


@pytest.mark.parametrize(("today", "expected"), [
    (date(2026, 3, 15), date(2026, 2, 1)),
    (date(2026, 3, 1), date(2026, 2, 1)),
    (date(2026, 3, 31), date(2026, 2, 1)),
    (date(2026, 1, 1), date(2025, 12, 1)),     # across the year
    (date(2026, 1, 31), date(2025, 12, 1)),
    (date(2024, 3, 1), date(2024, 2, 1)),      # leap year
    (date(2024, 2, 29), date(2024, 1, 1)),
])
def test_window_start_is_the_first_of_the_previous_month(today: date, expected: date) -> None:
    assert window_start(today) == expected


def mondays(first: date, last: date) -> list[date]:
    days = []
    day = first + timedelta(days=(7 - first.weekday()) % 7)
    while day <= last:
        days.append(day)
        day += timedelta(days=7)
    return days


def test_weekly_recurrence_started_long_ago() -> None:
    data = {"title": "Standup", "start": "2025-06-02T09:00:00", "end": "2025-06-02T10:30:00",  # a Monday
            "recurrence": "FREQ=WEEKLY"}
    result = prepare("schedule", data, TODAY)
    starts = [parse(o["start"]) for o in result["occurrences"]]
    assert [s.date() for s in starts] == mondays(window_start(TODAY), HORIZON)
    assert starts[0] == datetime(2026, 2, 2, 9, 0)  # the first Monday on or after Feb 1st
    for occurrence in result["occurrences"]:
        assert parse(occurrence["end"]) - parse(occurrence["start"]) == timedelta(hours=1, minutes=30)
        assert parse(occurrence["start"]).tzinfo is None  # a naive start stays naive
    assert result["title"] == "Standup"
    assert result["start"] == data["start"]  # the series' own start and end are kept as written


def test_recurrence_starting_in_the_future_begins_at_its_start() -> None:
    data = {"start": "2026-06-01T14:00:00", "end": "2026-06-01T15:00:00", "recurrence": "FREQ=WEEKLY;INTERVAL=2"}
    starts = [parse(o["start"]) for o in prepare("schedule", data, TODAY)["occurrences"]]
    assert starts[0] == datetime(2026, 6, 1, 14, 0)
    assert all(b - a == timedelta(days=14) for a, b in itertools.pairwise(starts))
    assert starts[-1].date() <= HORIZON


def test_daily_recurrence_fills_the_window_to_the_day() -> None:
    data = {"start": "2020-01-01T23:30:00", "end": "2020-01-02T00:15:00", "recurrence": "FREQ=DAILY"}
    found = prepare("schedule", data, TODAY)["occurrences"]
    days = [parse(o["start"]).date() for o in found]
    assert days[0] == window_start(TODAY)
    assert days[-1] == HORIZON  # 23:30 on the 370th day is still inside the window ...
    assert len(days) == (HORIZON - window_start(TODAY)).days + 1  # ... and nothing later, nothing missing
    assert all(parse(o["end"]) - parse(o["start"]) == timedelta(minutes=45) for o in found)


def test_offset_start_keeps_its_offset_and_window() -> None:
    data = {"start": "2026-01-05T09:00:00+09:00", "end": "2026-01-05T10:00:00+09:00", "recurrence": "FREQ=WEEKLY"}
    found = prepare("schedule", data, TODAY)["occurrences"]
    starts = [parse(o["start"]) for o in found]
    assert all(s.utcoffset() == timedelta(hours=9) for s in starts)
    assert all(o["start"].endswith("+09:00") and o["end"].endswith("+09:00") for o in found)
    assert starts[0] == datetime(2026, 2, 2, 9, 0, tzinfo=timezone(timedelta(hours=9)))
    assert starts[-1].date() <= HORIZON
    assert all(parse(o["end"]) - parse(o["start"]) == timedelta(hours=1) for o in found)


def test_utc_z_start() -> None:
    data = {"start": "2026-03-16T00:00:00Z", "end": "2026-03-16T01:00:00Z", "recurrence": "FREQ=MONTHLY"}
    found = prepare("schedule", data, TODAY)["occurrences"]
    assert [parse(o["start"]).month for o in found][:3] == [3, 4, 5]
    assert all(parse(o["start"]).utcoffset() == timedelta(0) for o in found)
    assert len(found) == 13  # 2026-03-16 .. 2027-03-16


def test_all_day_date_only_start() -> None:
    data = {"start": "2026-03-02", "end": "2026-03-03", "all_day": True, "recurrence": "FREQ=WEEKLY;BYDAY=MO"}
    found = prepare("schedule", data, TODAY)["occurrences"]
    assert found[0] == {"start": "2026-03-02T00:00:00", "end": "2026-03-03T00:00:00"}


def test_missing_end_means_zero_length() -> None:
    found = prepare("schedule", {"start": "2026-03-16T09:00:00", "recurrence": "FREQ=DAILY;COUNT=2"},
                    TODAY)["occurrences"]
    assert found == [{"start": "2026-03-16T09:00:00", "end": "2026-03-16T09:00:00"},
                     {"start": "2026-03-17T09:00:00", "end": "2026-03-17T09:00:00"}]


@pytest.mark.parametrize("recurrence", ["FREQ=DAILY;COUNT=3", "FREQ=DAILY;UNTIL=20250110T000000"])
def test_series_that_ended_before_the_window_has_no_occurrences(recurrence: str) -> None:
    data = {"start": "2025-01-01T09:00:00", "end": "2025-01-01T10:00:00", "recurrence": recurrence}
    assert prepare("schedule", data, TODAY)["occurrences"] == []


def test_until_inside_the_window_stops_the_series() -> None:
    data = {"start": "2026-03-02T09:00:00", "recurrence": "FREQ=WEEKLY;UNTIL=20260330T235959"}
    found = prepare("schedule", data, TODAY)["occurrences"]
    assert [o["start"][:10] for o in found] == ["2026-03-02", "2026-03-09", "2026-03-16", "2026-03-23",
                                                 "2026-03-30"]


def test_host_supplied_occurrences_are_dropped_without_recurrence() -> None:
    data = {"start": "2026-03-20T09:00:00", "occurrences": [{"start": "2099-01-01", "end": "2099-01-01"}]}
    assert "occurrences" not in prepare("schedule", data, TODAY)


def test_host_supplied_occurrences_are_recomputed_with_recurrence() -> None:
    data = {"start": "2026-03-16T09:00:00", "recurrence": "FREQ=DAILY;COUNT=1",
            "occurrences": [{"start": "2099-01-01", "end": "2099-01-01"}]}
    assert prepare("schedule", data, TODAY)["occurrences"] == [{"start": "2026-03-16T09:00:00",
                                                                "end": "2026-03-16T09:00:00"}]


@pytest.mark.parametrize("data", [
    {"recurrence": "FREQ=WEEKLY"},                                            # no start
    {"start": "next tuesday", "recurrence": "FREQ=WEEKLY"},
    {"start": "2026-03-16T09:00:00", "end": "soon", "recurrence": "FREQ=WEEKLY"},
    {"start": "2026-13-01T09:00:00", "recurrence": "FREQ=WEEKLY"},
    {"start": "2026-03-16T09:00:00", "recurrence": "WEEKLY"},
    {"start": "2026-03-16T09:00:00", "recurrence": "FREQ=FORTNIGHTLY"},
    {"start": "2026-03-16T09:00:00", "recurrence": "FREQ=WEEKLY;BYDAY=XX"},
    {"start": "2026-03-16T09:00:00", "recurrence": "FREQ=WEEKLY;INTERVAL=two"},
], ids=["no-start", "bad-start", "bad-end", "bad-month", "no-freq", "bad-freq", "bad-byday", "bad-interval"])
def test_invalid_recurring_schedules_are_refused(data: dict[str, Any]) -> None:
    assert refused("schedule", data).reason == "invalid_data"


@pytest.mark.parametrize(("start", "end"), [("2026-03-16T09:00:00+09:00", "2026-03-16T10:00:00"),
                                            ("2026-03-16T09:00:00", "2026-03-16T10:00:00Z")])
def test_mixed_naive_and_aware_times_are_refused(start: str, end: str) -> None:
    assert refused("schedule", {"start": start, "end": end, "recurrence": "FREQ=WEEKLY"}).reason == "invalid_data"


def test_occurrence_expansion_is_bounded() -> None:
    data = {"start": "2026-03-16T09:00:00", "recurrence": "FREQ=MINUTELY;INTERVAL=5"}
    try:
        result = prepare("schedule", data, TODAY)
    except RejectedChange as exc:
        assert exc.reason == "invalid_data"
    else:
        assert len(json.dumps(result)) <= TransportSection().batch_bytes


@settings(max_examples=100, deadline=None)
@given(today=st.dates(date(2000, 1, 1), date(2090, 12, 31)),
       offset_quarters=st.one_of(st.none(), st.integers(-12 * 4, 14 * 4)),
       start_shift=st.integers(-800, 800), hour=st.integers(0, 23), minute=st.sampled_from([0, 15, 30, 45]),
       length_minutes=st.integers(0, 60 * 48),
       rule=st.sampled_from(["FREQ=DAILY", "FREQ=DAILY;INTERVAL=3", "FREQ=WEEKLY", "FREQ=WEEKLY;BYDAY=MO,WE,FR",
                             "FREQ=MONTHLY", "FREQ=MONTHLY;BYMONTHDAY=31", "FREQ=YEARLY"]))
def test_every_occurrence_is_inside_the_window(today: date, offset_quarters: int | None, start_shift: int, hour: int,
                                               minute: int, length_minutes: int, rule: str) -> None:
    tz = None if offset_quarters is None else timezone(timedelta(minutes=15 * offset_quarters))
    start = datetime.combine(today + timedelta(days=start_shift), datetime.min.time()).replace(
        hour=hour, minute=minute, tzinfo=tz)
    end = start + timedelta(minutes=length_minutes)
    found = occurrences({"start": start.isoformat(), "end": end.isoformat(), "recurrence": rule}, today)
    since, horizon = window_start(today), today + RECURRENCE_WINDOW
    starts = [parse(o["start"]) for o in found]
    assert starts == sorted(starts)
    assert len(set(starts)) == len(starts)
    for occurrence, when in zip(found, starts, strict=True):
        assert since <= when.date() <= horizon  # dates as seen in the schedule's own offset
        assert when >= start
        assert when.utcoffset() == start.utcoffset()
        assert parse(occurrence["end"]) - when == timedelta(minutes=length_minutes)
    if rule == "FREQ=DAILY" and start.date() <= since:
        assert len(found) == (horizon - since).days + 1  # nothing missing either
    if rule.startswith(("FREQ=DAILY", "FREQ=WEEKLY")) and start.date() <= today:
        assert found  # the checks above ran on something: a daily or weekly rule begun by today recurs in the window


# -- schedule_in_window ------------------------------------------------------------------------------------------

SINCE = date(2026, 2, 1)


@pytest.mark.parametrize(("data", "expected"), [
    ({"start": "2026-02-01T09:00:00", "end": "2026-02-01T10:00:00"}, True),     # on the first day
    ({"start": "2026-01-31T09:00:00", "end": "2026-01-31T10:00:00"}, False),    # the day before
    ({"start": "2026-01-31T23:00:00", "end": "2026-02-01T01:00:00"}, True),     # ends inside
    ({"start": "2026-05-01T09:00:00"}, True),                                   # no end: the start counts
    ({"start": "2025-05-01T09:00:00"}, False),
    ({"start": "2026-03-01", "end": None}, True),
    ({"title": "no times"}, False),
    ({"start": "2025-01-06T09:00:00", "end": "2025-01-06T10:00:00",
      "occurrences": [{"start": "2026-03-02T09:00:00", "end": "2026-03-02T10:00:00"}]}, True),
    ({"start": "2025-01-06T09:00:00", "end": "2025-01-06T10:00:00", "occurrences": []}, False),
    ({"start": "2025-01-06T09:00:00", "occurrences": [{"start": "2025-02-03T09:00:00",
                                                       "end": "2025-02-03T10:00:00"}]}, False),
    ({"start": "2025-01-06T09:00:00", "occurrences": "garbage"}, False),
    ({"start": "2025-01-06T09:00:00", "occurrences": ["garbage", {"x": 1}]}, False),
    ({"start": "2026-02-01T00:30:00+09:00"}, True),  # the date as written, in its own offset
])
def test_schedule_in_window(data: dict[str, object], expected: bool) -> None:
    assert schedule_in_window(data, SINCE) is expected


def test_prepared_recurring_schedule_is_in_window_for_a_relink() -> None:
    data = prepare("schedule", {"start": "2024-01-01T09:00:00", "end": "2024-01-01T10:00:00",
                                "recurrence": "FREQ=WEEKLY"}, TODAY)
    assert schedule_in_window(data, window_start(TODAY))


@pytest.mark.parametrize("name", ["password", "PASSWORD", "passwordHash", "password-hash", "loginId", "LOGIN_ID",
                                  "otp_secret", "client.secret", "Api-Key", "private_key", "recovery_codes"])
def test_credential_names_match_exactly_ignoring_case_and_separators(name: str) -> None:
    assert find_credential({"outer": [{name: "x"}]}) == f"outer[0].{name}"


def test_the_documented_list_is_the_one_checked() -> None:
    from federationd.categories import CREDENTIAL_FIELDS, is_credential

    assert all(is_credential(name) for name in CREDENTIAL_FIELDS)
    assert not any(is_credential(name + "s_used") or is_credential("my_" + name) for name in CREDENTIAL_FIELDS)
