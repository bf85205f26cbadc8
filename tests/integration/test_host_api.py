"""The host API (SPEC 9): the record and its outbox row commit or roll back with the host's own transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, MetaData, String, Table, func, insert, select

from federationd.errors import RejectedChange
from federationd.outbox import capture
from federationd.records import get_record
from federationd.schema import outbox, records
from federationd.store import ensure_site_state, make_engine, migrate

HOST = MetaData()
host_people = Table("host_people", HOST, Column("id", String(32), primary_key=True), Column("name", String(64)))


class HostFailure(Exception):
    pass


@pytest.fixture
def engine(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # idempotent: a second init changes nothing
    HOST.create_all(engine)
    with engine.begin() as conn:
        ensure_site_state(conn, "site-h")
    yield engine
    engine.dispose()


def _counts(engine):
    with engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(outbox)).scalar_one(),
                conn.execute(select(func.count()).select_from(records)).scalar_one(),
                conn.execute(select(func.count()).select_from(host_people)).scalar_one())


def test_rolled_back_host_transaction_leaves_no_outbox_row(engine):
    with pytest.raises(HostFailure), engine.begin() as conn:
        conn.execute(insert(host_people).values(id="e-1", name="Ada"))
        capture.put(conn, "employee", "e-1", {"name": "Ada"})
        raise HostFailure("the host's own change failed after ours")
    assert _counts(engine) == (0, 0, 0)

    with engine.begin() as conn:
        conn.execute(insert(host_people).values(id="e-1", name="Ada"))
        written = capture.put(conn, "employee", "e-1", {"name": "Ada"})
    assert _counts(engine) == (1, 1, 1)
    with engine.connect() as conn:
        assert get_record(conn, "site-h", "employee", "e-1") == written


def test_refused_change_writes_nothing_and_versions_follow_commits(engine):
    with pytest.raises(RejectedChange) as refused, engine.begin() as conn:
        capture.put_many(conn, "employee", [("e-1", {"name": "ok"}), ("e-2", {"profile": {"TOTP": "123"}})])
    assert refused.value.reason == "credential_field" and "profile.TOTP" in str(refused.value)
    assert _counts(engine) == (0, 0, 0)

    with engine.begin() as conn:
        first = capture.put(conn, "employee", "e-1", {"name": "one"})
        second = capture.put(conn, "employee", "e-1", {"name": "two"})
        gone = capture.delete(conn, "employee", "e-1")
    assert first.version < second.version < gone.version and gone.deleted and gone.data == {}
    with pytest.raises(RejectedChange), engine.begin() as conn:
        capture.delete(conn, "employee", "e-1")
