"""The fault suite's tally: what each scenario does to the system, declared here and checked after every run.

Tests add to `FIGURES` (a per-process Counter) as they act: a SIGKILL, a broker stop, a hostile message, a record
compared. After each test, tests/faults/conftest.py takes the test's own additions and checks them against its
declaration below (a test that adds figures it did not declare, or not what it declared, fails); tests/conftest.py
sums them across pytest-xdist workers (they travel in the test reports), prints the total at the end of the run
("fault suite tally") and checks the total against the sum of the declarations of the tests that passed.

Each kind counts one thing only, named for what the test does (a SIGKILL is counted as a SIGKILL, not as a power
cut; a refused certificate is a bad input, not a fault). docs/reliability.md quotes the figures a run printed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

#: What this process's tests did so far; tests add to it, the fixtures take each test's share.
FIGURES: Counter[str] = Counter()

# -- what a scenario does to a running system (faults) --------------------------------------------------------
SIGKILLS = "daemons killed with SIGKILL (sender or receiver; the OS page cache survives)"
IMPORT_KILLS = "CSV imports killed with SIGKILL mid-transaction"
BROKER_RESTARTS = "broker application restarts (rabbitmqctl stop_app / start_app) with both daemons running"
ALARMS = "broker resource alarms raised (memory or disk)"
OUTAGES = "partner brokers stopped for a while (stop_app), then started"
RESTORES = "site databases restored from an older cold backup"
# -- bad input (not faults: nothing breaks, the input is refused) -----------------------------------------------
BAD_CERTS = "partner brokers presenting a bad certificate (self-signed, wrong host, expired), refused"
UNREACHABLE = "partner endpoints refusing connections (a closed port)"
MALFORMED = "malformed or hostile messages published as an authenticated partner"
REFUSED = "other bad inputs tried (tokens, tickets, config values, forbidden broker operations)"
FUZZED = "hypothesis examples run (each a generated, possibly damaged, message, token or ticket)"
TRUNCATED = "deterministic damaged inputs (truncations of a gzip message, inside the hypothesis examples)"
# -- the measure ------------------------------------------------------------------------------------------------
COMPARED = "records compared record by record between an origin and its partner"

#: Kinds printed first, in this order (anything else after them, sorted).
ORDER = (SIGKILLS, IMPORT_KILLS, BROKER_RESTARTS, ALARMS, OUTAGES, RESTORES, BAD_CERTS, UNREACHABLE, MALFORMED,
         REFUSED, FUZZED, TRUNCATED, COMPARED)

FAULT_KINDS = (SIGKILLS, IMPORT_KILLS, BROKER_RESTARTS, ALARMS, OUTAGES, RESTORES)


@dataclass(frozen=True)
class AtLeast:
    """A figure that depends on the run (random writers, hypothesis's search): at least this many."""

    n: int

    def __str__(self) -> str:
        return f">= {self.n}"


Figure = int | AtLeast

# "file.py::test_name" (parametrisations share the entry: each instance contributes it) -> kind -> figure.
DECLARED: dict[str, dict[str, Figure]] = {
    "test_crash.py::test_kill9_of_the_sender_at_random_moments_loses_nothing": {SIGKILLS: 5, COMPARED: AtLeast(41)},
    "test_crash.py::test_kill9_of_the_receiver_mid_apply_never_half_applies": {
        SIGKILLS: AtLeast(1), COMPARED: AtLeast(6001)},
    "test_crash.py::test_import_killed_with_the_daemon_does_not_hold_sends_back": {IMPORT_KILLS: 1, SIGKILLS: 1},
    "test_broker_faults.py::test_broker_restarts_and_memory_alarm_lose_nothing": {
        BROKER_RESTARTS: AtLeast(2), ALARMS: 1, COMPARED: AtLeast(3 * 2 * 2)},
    "test_broker_faults.py::test_partner_away_for_a_while_backs_off_then_delivers_everything": {
        OUTAGES: 1, COMPARED: AtLeast(51)},
    "test_broker_faults.py::test_disk_alarm_blocks_sends_until_lifted_and_loses_nothing": {
        ALARMS: 1, COMPARED: AtLeast(101)},
    "test_restore.py::test_restored_site_notices_before_it_sends_anything": {RESTORES: 1},
    "test_receive_order.py::test_kill9_of_the_receiver_during_a_20_part_snapshot_converges_without_dead_letters": {
        SIGKILLS: 1, COMPARED: AtLeast(3000)},
    "test_tls.py::test_link_accept_refuses_a_partner_broker_with_a_bad_certificate": {BAD_CERTS: 3},
    "test_tls.py::test_every_connect_refuses_a_partner_broker_whose_certificate_turned_bad": {
        BAD_CERTS: 3, COMPARED: AtLeast(4)},
    "test_tls.py::test_an_unreachable_partner_broker_is_named_with_the_cause": {UNREACHABLE: 1},
    "test_no_secrets.py::test_no_secret_in_logs_status_log_metrics_or_errors": {
        UNREACHABLE: 2, COMPARED: AtLeast(8)},
    "test_bad_input.py::test_bad_messages_are_dead_lettered_counted_logged_and_never_block": {
        MALFORMED: 28, COMPARED: AtLeast(2)},
    "test_bad_input.py::test_values_the_database_refuses_do_not_block_the_queue": {MALFORMED: 4},
    "test_broker_permissions.py::test_partner_credential_can_only_publish_its_own_routing_key_until_released": {
        REFUSED: 16},
    "test_config_faults.py::test_impossible_values_are_refused_by_name": {REFUSED: 30},
    "test_config_faults.py::test_port_zero_is_refused_by_name": {REFUSED: 1},
    # tests/faults/test_tokens.py is the handshake's (its count moves with it): at least one refusal
    "test_tokens.py::test_tokens_and_tickets_refused_and_credentials_stored_only_where_needed": {REFUSED: AtLeast(1)},
    "test_wire_fuzz.py::test_valid_messages_round_trip": {FUZZED: AtLeast(100)},
    "test_wire_fuzz.py::test_byte_damaged_messages_decode_or_are_refused_with_a_reason": {FUZZED: AtLeast(200)},
    "test_wire_fuzz.py::test_every_truncation_of_a_gzip_message_is_refused": {
        FUZZED: AtLeast(40), TRUNCATED: AtLeast(40)},
    "test_wire_fuzz.py::test_inflated_size_limit_is_exact": {FUZZED: AtLeast(30)},
    "test_wire_fuzz.py::test_check_origin_agrees_with_the_rule": {FUZZED: AtLeast(200)},
    "test_wire_fuzz.py::test_damaged_link_tokens_are_refused_cleanly": {FUZZED: AtLeast(200)},
    "test_wire_fuzz.py::test_damaged_tickets_are_refused_with_a_reason": {FUZZED: AtLeast(150)},
}


def scenario(nodeid: str) -> str:
    """"tests/faults/test_x.py::test_y[sqlite]" -> "test_x.py::test_y"."""
    path, _, name = nodeid.partition("::")
    return f"{path.rsplit('/', 1)[-1]}::{name.split('[', 1)[0]}"


def mismatches(declared: dict[str, Figure], actual: dict[str, int]) -> list[str]:
    """What differs between a declaration and what a test (or a run) did, one line per kind."""
    problems = []
    for kind in sorted(set(declared) | {k for k, v in actual.items() if v}):
        want, got = declared.get(kind, 0), actual.get(kind, 0)
        ok = got >= want.n if isinstance(want, AtLeast) else got == want
        if not ok:
            problems.append(f"{kind}: declared {want}, did {got}")
    return problems


def add_declared(total: dict[str, Figure], declared: dict[str, Figure]) -> None:
    """Sum declarations: exact figures stay exact; any minimum makes the sum a minimum."""
    for kind, figure in declared.items():
        before = total.get(kind, 0)
        n = (before.n if isinstance(before, AtLeast) else before) + (
            figure.n if isinstance(figure, AtLeast) else figure)
        total[kind] = AtLeast(n) if isinstance(before, AtLeast) or isinstance(figure, AtLeast) else n


def encode(declared: dict[str, Figure]) -> dict[str, list[object]]:
    """A declaration as plain data (it travels from xdist workers in the test report)."""
    return {kind: ["at_least" if isinstance(f, AtLeast) else "exact", f.n if isinstance(f, AtLeast) else f]
            for kind, f in declared.items()}


def decode(plain: dict[str, list[object]]) -> dict[str, Figure]:
    return {kind: AtLeast(int(str(n))) if how == "at_least" else int(str(n)) for kind, (how, n) in plain.items()}
