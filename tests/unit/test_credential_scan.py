"""The credential scan's fast pass finds exactly what the plain walk finds (same field, same path), whatever the
nesting, the letter case, the separators, the key types, and however many names it has already seen."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from federationd import categories
from federationd.bounds import clip
from federationd.categories import CREDENTIAL_FIELDS, find_credential

_NAMES = frozenset(re.sub(r"[-_.]", "", name).casefold() for name in CREDENTIAL_FIELDS)


def reference(data: Any, path: str = "") -> str | None:
    """The scan as it was written first: every key normalised with a regex, at every depth."""
    if isinstance(data, Mapping):
        for key, value in data.items():
            here = f"{path}.{clip(key)}" if path else clip(key)
            if isinstance(key, str) and re.sub(r"[-_.]", "", key).casefold() in _NAMES:
                return here
            found = reference(value, here)
            if found:
                return found
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found = reference(value, f"{path}[{index}]")
            if found:
                return found
    return None


_KEYS = st.one_of(
    st.sampled_from(["name", "email", "secretary", "tokens_used", "Password", "LOGIN-ID", "client.secret", "x",
                     "otp", "api_Key", "pass", "token_bucket", "ﬁ", "ß", "İ"]),
    st.text(max_size=8),
    st.text(min_size=65, max_size=70),  # longer than the remembered names
)
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))
_DATA = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=5),
                            st.tuples(inner, inner)),  # a tuple is not walked (JSON never makes one)
    max_leaves=30,
)


@settings(max_examples=400)
@given(data=st.dictionaries(_KEYS, _DATA, max_size=6))
def test_the_fast_scan_agrees_with_the_plain_walk(data: dict[str, Any]) -> None:
    assert find_credential(data) == reference(data)
    assert find_credential(MappingProxyType(data)) == reference(data)  # any Mapping, not only dict


def test_names_seen_before_do_not_hide_a_credential_later() -> None:
    clean = {"name": "Sato", "profile": {"email": "s@example.com", "nickname": "s"}}
    for _ in range(3):
        assert find_credential(clean) is None
    assert find_credential({**clean, "profile": {"email": "x", "Pass-Word": "y"}}) == "profile.Pass-Word"
    assert find_credential({1: "x", "list": [{"n": 1}, {"TOTP": 2}]}) == "list[1].TOTP"


def test_the_remembered_names_stay_bounded() -> None:
    for index in range(categories._CLEAN_KEYS_MAX + 100):
        find_credential({f"field{index}": 1, "k" * 100: 2})
    assert len(categories._CLEAN_KEYS) <= categories._CLEAN_KEYS_MAX
    assert all(len(key) <= categories._CLEAN_KEY_CHARS for key in categories._CLEAN_KEYS)
    assert find_credential({f"field{categories._CLEAN_KEYS_MAX + 500}": 1, "secret": 2}) == "secret"
