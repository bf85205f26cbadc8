"""Text no database can store (a lone UTF-16 surrogate) is found in a change's data whether or not the decoder
takes its fast path: the fast path is taken only for a body without any surrogate escape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federationd import wire
from federationd.wire import ChangesBody

PARTNER = "site-b"


def body(*datas: dict[str, Any], ascii_only: bool = True) -> bytes:
    changes = [{"category": "employee", "id": f"e-{n}", "origin": PARTNER, "version": n + 1, "deleted": False,
                "data": data} for n, data in enumerate(datas)]
    return json.dumps(wire.changes_body(PARTNER, 1, changes), ensure_ascii=ascii_only).encode("utf-8",
                                                                                              "surrogatepass")


def decoded(raw: bytes) -> ChangesBody:
    result = wire.decode("changes", None, raw)
    assert isinstance(result, ChangesBody)
    return result


@pytest.mark.parametrize("data", [{"name": "\ud800"}, {"a": [{"\udfff": 1}]}, {"x": {"y": "ok \udc00 no"}}])
def test_a_lone_surrogate_anywhere_in_data_skips_that_change_only(data: dict[str, Any]) -> None:
    result = decoded(body({"name": "fine"}, data))
    assert [change.id for change in result.changes] == ["e-0"]
    assert [(skip.id, skip.reason) for skip in result.skipped] == [("e-1", "invalid")]
    assert "not valid Unicode" in result.skipped[0].message


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-le"])
def test_raw_surrogate_bytes_skip_that_change_only(encoding: str) -> None:
    """`json.loads` reads surrogate bytes through ("surrogatepass"), in any encoding it detects."""
    text = body({"name": "fine"}, {"name": "\ud800"}, ascii_only=False).decode("utf-8", "surrogatepass")
    result = decoded(text.encode(encoding, "surrogatepass"))
    assert [change.id for change in result.changes] == ["e-0"]
    assert [(skip.id, skip.reason) for skip in result.skipped] == [("e-1", "invalid")]


def test_a_valid_pair_and_escaped_backslashes_are_kept() -> None:
    result = decoded(body({"smile": "\U0001f600", "path": "C:\\ud800"}))
    assert result.changes[0].data == {"smile": "\U0001f600", "path": "C:\\ud800"}
    assert result.skipped == []


@settings(max_examples=200)
@given(texts=st.lists(st.text(alphabet=st.characters(codec="utf-16", exclude_categories=()), max_size=6),
                      min_size=1, max_size=4), ascii_only=st.booleans())
def test_skipped_exactly_when_the_text_cannot_be_encoded(texts: list[str], ascii_only: bool) -> None:
    datas = [{"t": text, text: 1} for text in texts]
    def storable(text: str) -> bool:
        try:
            text.encode()
        except UnicodeEncodeError:
            return False
        return True
    result = decoded(body(*datas, ascii_only=ascii_only))
    assert [change.id for change in result.changes] == [f"e-{n}" for n, t in enumerate(texts) if storable(t)]
    assert [skip.id for skip in result.skipped] == [f"e-{n}" for n, t in enumerate(texts) if not storable(t)]
