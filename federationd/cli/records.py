"""`records put|delete|get|list`: home records written through the one capture path; replicas read."""

from __future__ import annotations

import json
from typing import Any

import click

from federationd.cli.base import State, emit, fail, guarded, json_option, main, pass_state
from federationd.errors import RejectedChange
from federationd.outbox import capture
from federationd.records import get_record, list_records
from federationd.store import reading


@main.group()
def records() -> None:
    """Read and write records (home records for writes)."""


def _parse_data(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RejectedChange("invalid_data", f"--data is not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise RejectedChange("invalid_data", "--data must be a JSON object")
    return data


@records.command("put")
@click.argument("category")
@click.argument("record_id", metavar="ID")
@click.option("--data", "data_text", required=True, help="The record's fields, as a JSON object.")
@json_option
@pass_state
@guarded
def records_put(state: State, category: str, record_id: str, data_text: str, as_json: bool) -> None:
    """Create or change a home record."""
    data = _parse_data(data_text)
    with state.runtime().engine.begin() as conn:
        record = capture.put(conn, category, record_id, data)
    emit(as_json, record.as_json(), lambda: click.echo(f"{category} {record_id}: version {record.version}"))


@records.command("delete")
@click.argument("category")
@click.argument("record_id", metavar="ID")
@json_option
@pass_state
@guarded
def records_delete(state: State, category: str, record_id: str, as_json: bool) -> None:
    """Delete a home record (partners receive a tombstone)."""
    with state.runtime().engine.begin() as conn:
        record = capture.delete(conn, category, record_id)
    emit(as_json, record.as_json(), lambda: click.echo(f"{category} {record_id}: deleted (version "
                                                       f"{record.version})"))


@records.command("get")
@click.argument("category")
@click.argument("record_id", metavar="ID")
@click.option("--origin", help="A partner's site id (default: this site).")
@json_option
@pass_state
@guarded
def records_get(state: State, category: str, record_id: str, origin: str | None, as_json: bool) -> None:
    """Show one record; exit 1 if there is none."""
    site = origin or state.config.site.id
    with reading(state.runtime().engine) as conn:
        record = get_record(conn, site, category, record_id)
    if record is None:
        fail(f"no {category} {record_id!r} of origin {site!r}")
    emit(as_json, record.as_json(), lambda: click.echo(json.dumps(record.as_json(), ensure_ascii=False, indent=2)))


@records.command("list")
@click.argument("category")
@click.option("--origin", help="A partner's site id (default: this site).")
@click.option("--include-deleted", is_flag=True, help="Also list tombstones.")
@json_option
@pass_state
@guarded
def records_list(state: State, category: str, origin: str | None, include_deleted: bool, as_json: bool) -> None:
    """List records of one category."""
    site = origin or state.config.site.id
    with reading(state.runtime().engine) as conn:
        rows = list_records(conn, site, category, include_deleted)

    def text() -> None:
        for record in rows:
            mark = " (deleted)" if record.deleted else ""
            click.echo(f"{record.id}\tv{record.version}{mark}\t{json.dumps(record.data, ensure_ascii=False)}")
    emit(as_json, [record.as_json() for record in rows], text)
