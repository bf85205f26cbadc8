"""Bad input 9: link tokens and sign-in tickets that are expired, reused, tampered with or meant for another site
are refused; the one-time credentials of tokens and the partner passwords we provision are stored nowhere but where
they are needed (the broker, and the partner that must present them)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import update

from federationd import tickets
from federationd.identity import signing_key
from federationd.schema import tokens as token_rows
from federationd.tokens import decode
from tests.faults.common import (
    FIGURES,
    REFUSED,
    count_records,
    credential_of,
    database_text,
    link_state,
    raw_files,
)
from tests.support.sites import Site, coded, start_code
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _token(site: Site) -> str:
    return site.cli("link", "request").stdout.strip().splitlines()[-1]


def _one_line_refusal(site: Site, *args: str, code: int = 1) -> str:
    result = site.cli(*args, check=False)
    FIGURES[REFUSED] += 1
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1, (args[:2], result.returncode, result.stderr)
    return lines[0]


def _users(broker) -> set[str]:
    return {u["name"] for u in broker.api("GET", "/api/users")}


def _flip(text: str, index: int) -> str:
    return text[:index] + ("A" if text[index] != "A" else "B") + text[index + 1:]


def test_tokens_and_tickets_refused_and_credentials_stored_only_where_needed(make_site, broker):
    a = make_site("alpha", start=False)
    b, c = make_site("beta"), make_site("gamma", start=False)
    issued: list[str] = []

    # expired at the requester: the token's own text still says it is valid (nothing signs it), but the requester
    # revoked its broker user when it expired, so the acceptance cannot even be published
    stale = _token(a)
    issued.append(stale)
    with a.engine() as engine, engine.begin() as conn:
        conn.execute(update(token_rows).values(expires_at=time.time() - 1))
    a.start()  # its housekeeping revokes expired tokens' users at start, then every minute
    wait_until(lambda: decode(stale).user not in _users(broker), 60, what="the expired token's user revoked")
    line = _one_line_refusal(b, "link", "accept", *coded(stale))
    assert a.id in line and "expired" in line, line

    token = _token(a)
    issued.append(token)
    parsed = decode(token)
    prefix = len("fedlink1.")
    expired = type(parsed)(**{**parsed.__dict__, "expires_at": time.time() - 60}).encode()
    elsewhere = type(parsed)(**{**parsed.__dict__, "public_url": c.cfg["broker"]["public_url"]}).encode()
    refusals = [  # (site, args, exit code, what the one line must say)
        # tampered: the first payload character breaks the JSON inside; a cut-off token; another prefix
        (b, ("link", "accept", *coded(_flip(token, prefix))), 1, "damaged"),
        (b, ("link", "inspect", _flip(token, prefix)), 1, "damaged"),
        (b, ("link", "accept", *coded(token[:-7])), 1, "damaged"),
        (b, ("link", "accept", *coded("fedlink2" + token[8:])), 1, "not a federationd link token"),
        (b, ("link", "accept", *coded(expired)), 1, "expired"),  # expired in its own text
        (a, ("link", "accept", *coded(token)), 1, "this site itself"),  # our own token
        # pointed at another site's broker vhost: the one-time credential is not valid there
        (b, ("link", "accept", *coded(elsewhere)), 69, a.id),
    ]
    with ThreadPoolExecutor(4) as pool:
        lines = list(pool.map(lambda r: _one_line_refusal(r[0], *r[1], code=r[2]), refusals))
    for (_site, args, _code, says), line in zip(refusals, lines, strict=True):
        assert says in line, (args[:2], line)
    assert b.link_state(a.id) is None and f"fed.{b.id}.{a.id}" not in _users(broker)

    # the genuine token works once; a second acceptance (by anybody) is refused
    b.cli("link", "accept", *coded(token))
    wait_until(lambda: link_state(a, b.id) == "awaiting_start", 60, what="A sees B's acceptance")
    line = _one_line_refusal(c, "link", "accept", *coded(token))
    assert "already used" in line and a.id in line, line
    a.cli("link", "start", b.id, *start_code(a, b.id))
    wait_until(lambda: link_state(a, b.id) == "linked" and link_state(b, a.id) == "linked", 60, what="linked")

    # a token whose site id was changed on its way: C's operator was read the code of the token A issued, so the
    # edited token is refused at accept, and nothing is stored, provisioned or sent
    forged = decode(_token(a))
    issued.append(forged.encode())
    renamed = type(forged)(**{**forged.__dict__, "site": "site-zz"}).encode()
    line = _one_line_refusal(c, "link", "accept", renamed, *coded(forged.encode())[1:])  # the issued token's code
    assert "changed on its way" in line, line
    assert c.link_state("site-zz") is None and a.link_state(c.id) is None

    # where the secrets are: token passwords nowhere in either database (nor in the SQLite files' free pages or
    # state_dir); the password A provisioned for B (which B must present) is at B only, and vice versa
    token_passwords = {decode(t).password for t in issued}
    a_to_b = credential_of(a, b.id)[1]  # B's password for A's user on B's broker: provisioned by B
    b_to_a = credential_of(b, a.id)[1]  # provisioned by A
    for site, foreign in ((a, b_to_a), (b, a_to_b)):
        text, blobs = database_text(site), raw_files(site)
        for secret in (*token_passwords, foreign):
            assert secret not in text and secret.encode() not in blobs, f"a secret stored at {site.id}"

    _tickets(a, b)


def _tickets(a: Site, b: Site) -> None:
    """Sign-in tickets between linked A and B (SPEC 7): forged, expired, replayed, foreign: refused."""
    a.put("employee", "e-1", {"name": "Visitor"})
    a.put("employee", "e-2", {"name": "Another"})
    wait_until(lambda: count_records(b, a.id, "employee") == 2, 60, what="A's employees at B")
    key = signing_key(a.dir / "state")

    ticket = a.cli("access", "ticket", b.id, "e-1").stdout.strip()
    answer = b.json("access", "redeem", ticket)
    assert answer["allowed"] is True and answer["employee"] == "e-1" and answer["origin"] == a.id
    assert "already used" in _one_line_refusal(b, "access", "redeem", ticket)

    payload, signature = ticket[len(tickets.PREFIX):].split(".")
    claims = json.loads(tickets._unb64(payload))
    edited = tickets._b64(json.dumps({**claims, "sub": "e-2", "jti": "x" * 32}, separators=(",", ":"),
                                     sort_keys=True).encode())
    now = time.time()
    cases = {
        "another employee, same signature": (f"{tickets.PREFIX}{edited}.{signature}", "forged"),
        "signed by the audience itself": (tickets.issue(signing_key(b.dir / "state"), a.id, b.id, "e-1", now),
                                          "forged"),
        "expired": (tickets.issue(key, a.id, b.id, "e-1", now - 61), "expired"),
        "valid for an hour": (_long_lived(key, a.id, b.id), "does not match"),
        "for another site": (tickets.issue(key, a.id, "site-zz", "e-1", now), "not this site"),
        "from a site that is not a partner": (tickets.issue(key, "site-zz", b.id, "e-1", now), "not a linked"),
        "truncated": (ticket[:-10], "forged"),
    }
    with ThreadPoolExecutor(4) as pool:  # independent refusals, side by side
        lines = dict(zip(cases, pool.map(lambda case: _one_line_refusal(b, "access", "redeem", case[0]),
                                         cases.values()), strict=True))
    for name, (_text, reason) in cases.items():
        assert reason in lines[name], (name, lines[name])

    fresh = a.cli("access", "ticket", b.id, "e-2").stdout.strip()
    a.cli("link", "release", b.id, "--yes")
    wait_until(lambda: link_state(b, a.id) == "stopped", 60, what="B sees the release")
    assert "not a linked partner" in _one_line_refusal(b, "access", "redeem", fresh)


def _long_lived(key, issuer: str, audience: str) -> str:
    """A correctly signed ticket whose validity is an hour, not 60 seconds."""
    now = time.time()
    body = json.dumps({"iss": issuer, "aud": audience, "sub": "e-1", "iat": now, "exp": now + 3600,
                       "jti": "y" * 32}, separators=(",", ":"), sort_keys=True).encode()
    return f"{tickets.PREFIX}{tickets._b64(body)}.{tickets._b64(key.sign(body))}"
