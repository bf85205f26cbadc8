"""The send path splices stored JSON into messages; the result must equal the plain dict-and-dump encoding."""

from __future__ import annotations

import gzip
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from federationd import wire
from federationd.sql import dumps

values = st.recursive(st.none() | st.booleans() | st.integers(-10**9, 10**9) | st.text(max_size=20),
                      lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=12)
changes = st.lists(st.tuples(st.sampled_from(["employee", "schedule"]), st.text(min_size=1, max_size=12),
                             st.integers(1, 10**12), st.booleans(), st.dictionaries(st.text(max_size=8), values,
                                                                                    max_size=5)), max_size=20)


def _body(message: wire.Outgoing) -> object:
    raw = gzip.decompress(message.body) if message.content_encoding == "gzip" else message.body
    return json.loads(raw)


@settings(max_examples=100)
@given(changes=changes, epoch=st.integers(0, 2**40), snapshot=st.booleans())
def test_spliced_message_equals_the_dumped_one(changes, epoch, snapshot):
    header = {"id": "s1", "part": 1, "final": False, "categories": ["employee"]} if snapshot else None
    texts = [wire.change_json(c, i, "site-a", v, d, dumps(data)) for c, i, v, d, data in changes]
    dicts = [{"category": c, "id": i, "origin": "site-a", "version": v, "deleted": d, "data": data}
             for c, i, v, d, data in changes]
    versions = [v for _c, _i, v, _d, _data in changes]
    spliced = wire.encode_changes("snapshot" if snapshot else "changes", "site-a", epoch, texts,
                                  min(versions, default=0), max(versions, default=0), header)
    dumped = wire.encode("snapshot" if snapshot else "changes", wire.changes_body("site-a", epoch, dicts, header))
    assert _body(spliced) == _body(dumped)
