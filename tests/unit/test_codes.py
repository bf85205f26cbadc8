"""Verification codes: format, leniency when typed, and that any edit of what they cover changes them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federationd import codes
from federationd.errors import LinkError

CLAIMS = codes.acceptance_claims(site="site-b", public_url="amqps://mq.b:5671/b", key="k" * 44, token_id="t1",
                                 token_digest="d" * 64, accepted_by="bob@b")


def test_format_is_five_groups_of_three_digits() -> None:
    code = codes.token_code("fedlink1.abc")
    assert re.fullmatch(r"\d{3}(-\d{3}){4}", code)
    assert codes.DIGITS == 15 and 10**codes.DIGITS > 2**48  # at least 48 bits


@pytest.mark.parametrize("typed", ["{}", "{} ", " {}", "{}".replace("-", " ")])
def test_typed_codes_ignore_spaces_and_dashes(typed: str) -> None:
    code = codes.token_code("fedlink1.abc")
    assert codes.matches(code, typed.format(code).replace("-", " ") if " " in typed else typed.format(code))
    assert codes.matches(code, code.replace("-", ""))


@pytest.mark.parametrize("typed", ["", "12345", "123-456-789-012-34x", "١٢٣٤٥٦٧٨٩٠١٢٣٤٥", "1" * 16])
def test_malformed_codes_are_refused_with_the_format(typed: str) -> None:
    with pytest.raises(LinkError, match="15 digits"):
        codes.matches(codes.token_code("x"), typed)


def test_a_wrong_code_does_not_match() -> None:
    assert not codes.matches(codes.token_code("fedlink1.abc"), codes.token_code("fedlink1.abd"))


@given(st.text(min_size=1, max_size=200), st.integers(0, 199))
def test_any_edit_of_the_token_changes_its_digest(text: str, where: int) -> None:
    where %= len(text)
    edited = text[:where] + ("A" if text[where] != "A" else "B") + text[where + 1:]
    if edited.strip() != text.strip():
        assert codes.token_digest(edited) != codes.token_digest(text)


def test_whitespace_around_a_pasted_token_does_not_change_its_code() -> None:
    assert codes.token_code("  fedlink1.abc\n") == codes.token_code("fedlink1.abc")


@pytest.mark.parametrize("field", sorted(CLAIMS))
def test_each_claim_is_covered_by_the_acceptor_code(field: str) -> None:
    assert codes.acceptance_code({**CLAIMS, field: CLAIMS[field] + "x"}) != codes.acceptance_code(CLAIMS)
