"""Unit tests for federationd.config: the site YAML of SPEC 8, validated, with errors naming file and key.

Every config here carries the broker password `SECRET`; no ConfigError may ever echo it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from federationd import config as config_module
from federationd.config import Config, config_path, load_config, permission_problem
from federationd.errors import ConfigError

PASSWORD = "SECRET"

# The SPEC 8 example, verbatim but for the CA file (which must exist): written to tmp_path by `spec_text`.
SPEC_EXAMPLE = """\
site: {id: site-a, company: "Example Co., Ltd.", name: "Example HQ"}
state_dir: /var/lib/federationd
database: {url: "sqlite:////var/lib/federationd/site.db"}   # or postgresql+psycopg://...
broker:
  url: "amqps://federationd:SECRET@mq.site-a.example:5671/federation"   # our own broker, admin-ish user
  management_url: "https://mq.site-a.example:15671"                     # provisioning, with url's credentials
  public_url: "amqps://mq.site-a.example:5671/federation"                # what partners connect to
tls: {ca_file: CA_FILE, cert_file: null, key_file: null}
schedule: {quiet_period: 15m, max_delay: 2h, busy_retry: 15m}
paused: false
links:
  site-b: {paused: false}
metrics: {listen: "127.0.0.1:9464"}
log: {retention: 365d}
"""


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n(not parsed by load_config)\n-----END CERTIFICATE-----\n")
    return path


@pytest.fixture
def spec_text(ca_file: Path) -> str:
    return SPEC_EXAMPLE.replace("CA_FILE", f'"{ca_file}"')


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str], Path]:
    def writer(text: str) -> Path:
        path = tmp_path / "federationd.yaml"
        path.write_text(text, encoding="utf-8")
        return path
    return writer


@pytest.fixture
def spec_dict(spec_text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(spec_text)
    return loaded


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert PASSWORD not in message
    assert message.startswith(f"{path}: ")
    assert "\n" not in message  # one line for the operator
    return message


# -- the example loads -------------------------------------------------------------------------------------------

def test_spec_example_loads(write: Callable[[str], Path], spec_text: str, ca_file: Path) -> None:
    config = load_config(write(spec_text))
    assert isinstance(config, Config)
    assert (config.site.id, config.site.company, config.site.name) == ("site-a", "Example Co., Ltd.", "Example HQ")
    assert config.state_dir == Path("/var/lib/federationd")
    assert config.database.url == "sqlite:////var/lib/federationd/site.db"
    assert config.broker.url == "amqps://federationd:SECRET@mq.site-a.example:5671/federation"
    assert config.broker.management_url == "https://mq.site-a.example:15671"
    assert config.broker.public_url == "amqps://mq.site-a.example:5671/federation"
    assert (config.tls.ca_file, config.tls.cert_file, config.tls.key_file) == (ca_file, None, None)
    assert config.schedule.quiet_period == timedelta(minutes=15)
    assert config.schedule.max_delay == timedelta(hours=2)
    assert config.schedule.busy_retry == timedelta(minutes=15)
    assert config.paused is False
    assert set(config.links) == {"site-b"}
    assert config.links["site-b"].paused is False
    assert config.links["site-b"].visit is None
    assert config.links["site-b"].accept.default.role == "read"  # SPEC 7 default: site-wide read
    assert (config.metrics.host, config.metrics.port) == ("127.0.0.1", 9464)
    assert config.log.retention == timedelta(days=365)


def test_minimal_config_gets_the_defaults(write: Callable[[str], Path]) -> None:
    config = load_config(write(
        "site: {id: s1, company: C, name: N}\nstate_dir: /tmp/x\ndatabase: {url: 'postgresql+psycopg://db/fed'}\n"
        "broker: {url: 'amqps://u:SECRET@h/v', management_url: 'https://h:15671/', public_url: 'amqps://h/v'}\n"))
    assert config.schedule.quiet_period == timedelta(minutes=15)
    assert config.schedule.max_delay == timedelta(hours=2)
    assert config.schedule.busy_retry == timedelta(minutes=15)
    assert config.links == {}
    assert config.link("site-z").paused is False  # an unlisted partner gets the defaults
    assert config.broker.management_url == "https://h:15671"  # trailing slash trimmed
    assert config.log.retention == timedelta(days=365)


@pytest.mark.parametrize(("text", "expected"), [
    ("15m", timedelta(minutes=15)), ("2h", timedelta(hours=2)), ("1s", timedelta(seconds=1)),
    ("365d", timedelta(days=365)), ("500ms", timedelta(milliseconds=500)),
])
def test_durations_in_yaml(write: Callable[[str], Path], spec_dict: dict[str, Any], text: str,
                           expected: timedelta) -> None:
    spec_dict["schedule"] = {"quiet_period": text, "max_delay": "365d", "busy_retry": text}
    if expected >= timedelta(seconds=1):  # a retention under a second is refused (see REFUSED)
        spec_dict["log"] = {"retention": text}
    config = load_config(write(yaml.safe_dump(spec_dict)))
    assert config.schedule.quiet_period == expected
    assert config.schedule.busy_retry == expected
    if expected >= timedelta(seconds=1):
        assert config.log.retention == expected


def test_access_policy_from_spec_7(write: Callable[[str], Path], spec_dict: dict[str, Any]) -> None:
    spec_dict["links"]["site-b"] = yaml.safe_load("""
visit: {employees: [e-1], departments: [sales], groups: [], positions: [manager]}
accept:
  default: {role: read}
  rules:
    - {position: manager, role: edit}
    - {department: sales, role: read, products: [schedule, presence]}
    - {department: sales, position: manager, role: admin}
    - {employee: e-17, role: none}
    - {department: support, role: edit, networks: [{cidr: 192.0.2.0/24, role: read}]}
""")
    link = load_config(write(yaml.safe_dump(spec_dict))).links["site-b"]
    assert link.visit is not None and link.visit.departments == ["sales"]
    assert [rule.role for rule in link.accept.rules] == ["edit", "read", "admin", "none", "edit"]
    assert link.accept.rules[1].products == ["schedule", "presence"]
    assert link.accept.rules[4].networks[0].cidr == "192.0.2.0/24"


def test_cidr_is_normalised(write: Callable[[str], Path], spec_dict: dict[str, Any]) -> None:
    spec_dict["links"]["site-b"]["accept"] = {"rules": [{"department": "d", "role": "edit",
                                                         "networks": [{"cidr": "192.0.2.17/24", "role": "read"}]}]}
    assert load_config(write(yaml.safe_dump(spec_dict))).links["site-b"].accept.rules[0].networks[0].cidr == \
        "192.0.2.0/24"


# -- refusals ----------------------------------------------------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(config: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return mutate


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(config: dict[str, Any]) -> None:
        *parents, leaf = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        del node[leaf]
    return mutate


def _rules(*rules: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    return _set("links.site-b.accept", {"rules": list(rules)})


REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    ("quiet-period-words", _set("schedule.quiet_period", "fifteen"), ["schedule.quiet_period", "fifteen"]),
    ("quiet-period-number", _set("schedule.quiet_period", 15), ["schedule.quiet_period"]),
    ("quiet-period-zero", _set("schedule.quiet_period", "0s"), ["schedule", "quiet_period"]),
    ("unknown-top-level-key", _set("sites", {"x": 1}), ["unknown key 'sites'"]),
    ("unknown-nested-key", _set("schedule.quiet", "15m"), ["unknown key 'schedule.quiet'"]),
    ("unknown-link-key", _set("links.site-b.pause", True), ["unknown key 'links.site-b.pause'"]),
    ("missing-site", _drop("site"), ["missing key 'site'"]),
    ("missing-site-id", _drop("site.id"), ["missing key 'site.id'"]),
    ("missing-broker-url", _drop("broker.url"), ["missing key 'broker.url'"]),
    ("missing-database", _drop("database"), ["missing key 'database'"]),
    ("bad-site-id", _set("site.id", "Site_A"), ["site.id", "Site_A"]),
    ("site-id-too-long", _set("site.id", "a" * 64), ["site.id"]),
    ("empty-company", _set("site.company", ""), ["site.company"]),
    ("bad-link-id", _set("links.Site_B", {}), ["links.Site_B"]),
    ("broker-url-not-amqps", _set("broker.url", "amqp://federationd:SECRET@mq.site-a.example:5672/federation"),
     ["broker.url", "amqps"]),
    ("broker-url-https", _set("broker.url", "https://federationd:SECRET@mq.site-a.example/federation"),
     ["broker.url", "amqps"]),
    ("broker-url-no-password", _set("broker.url", "amqps://federationd@mq.site-a.example:5671/federation"),
     ["broker.url", "password"]),
    ("broker-url-no-vhost", _set("broker.url", "amqps://federationd:SECRET@mq.site-a.example:5671"),
     ["broker.url", "vhost"]),
    ("broker-url-no-host", _set("broker.url", "amqps://federationd:SECRET@:5671/federation"), ["broker.url"]),
    ("broker-url-not-a-string", _set("broker.url", 5671), ["broker.url"]),
    ("public-url-credentials", _set("broker.public_url", "amqps://federationd:SECRET@mq.site-a.example:5671/fed"),
     ["broker.public_url", "credentials"]),
    ("public-url-amqp", _set("broker.public_url", "amqp://mq.site-a.example:5672/federation"),
     ["broker.public_url"]),
    ("management-url-http", _set("broker.management_url", "http://mq.site-a.example:15672"),
     ["broker.management_url", "https"]),
    ("max-delay-below-quiet", _set("schedule", {"quiet_period": "2h", "max_delay": "15m"}),
     ["schedule", "max_delay", "quiet_period"]),
    ("link-to-itself", _set("links.site-a", {"paused": False}), ["links", "'site-a'", "itself"]),
    ("rule-without-level", _rules({"role": "edit"}), ["links.site-b.accept.rules.0"]),
    ("rule-employee-and-department", _rules({"employee": "e-1", "department": "sales", "role": "edit"}),
     ["links.site-b.accept.rules.0", "employee"]),
    ("rule-employee-and-position", _rules({"position": "m", "role": "read"}, {"employee": "e", "position": "m",
                                                                              "role": "read"}),
     ["links.site-b.accept.rules.1"]),
    ("rule-without-role", _rules({"position": "manager"}), ["missing key 'links.site-b.accept.rules.0.role'"]),
    ("rule-unknown-key", _rules({"position": "manager", "role": "edit", "team": "x"}),
     ["unknown key 'links.site-b.accept.rules.0.team'"]),
    ("bad-cidr", _rules({"department": "d", "role": "edit", "networks": [{"cidr": "192.0.2.0/33", "role": "r"}]}),
     ["links.site-b.accept.rules.0.networks.0.cidr", "192.0.2.0/33"]),
    ("cidr-not-an-address", _rules({"department": "d", "role": "edit", "networks": [{"cidr": "lan", "role": "r"}]}),
     ["cidr"]),
    ("tls-ca-missing", _set("tls.ca_file", "/nonexistent/ca.pem"), ["tls", "ca_file", "/nonexistent/ca.pem"]),
    ("tls-cert-without-key", _set("tls.cert_file", "/nonexistent/cert.pem"), ["tls", "cert_file", "key_file"]),
    ("database-mysql", _set("database.url", "mysql://fed:SECRET@db/fed"), ["database.url"]),
    ("metrics-listen-no-port", _set("metrics.listen", "127.0.0.1"), ["metrics.listen"]),
    ("metrics-listen-bad-port", _set("metrics.listen", "127.0.0.1:70000"), ["metrics.listen"]),
    ("paused-not-bool", _set("paused", "sometimes"), ["paused"]),
    ("batch-records-zero", _set("transport.batch_records", 0), ["transport.batch_records"]),
]


@pytest.mark.parametrize(("mutate", "fragments"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused_with_file_and_key(write: Callable[[str], Path], spec_dict: dict[str, Any],
                                   mutate: Callable[[dict[str, Any]], None], fragments: list[str]) -> None:
    mutate(spec_dict)
    message = refused(write(yaml.safe_dump(spec_dict)))
    for fragment in fragments:
        assert fragment in message


def test_literal_quiet_period_fifteen(write: Callable[[str], Path], spec_text: str) -> None:
    message = refused(write(spec_text.replace("quiet_period: 15m", "quiet_period: fifteen")))
    assert "schedule.quiet_period" in message


@pytest.mark.parametrize(("text", "fragment"), [
    ("site: {id: site-a\nbroker: [", "not valid YAML at line"),
    ("site: site-a\n  broker: x\n", "not valid YAML"),
    ("- site-a\n- site-b\n", "expected a mapping"),
    ("just a string\n", "expected a mapping"),
    ("", "expected a mapping"),
    ('broker:\n  url: "amqps://federationd:SECRET@mq.site-a.example:5671/federation\n', "not valid YAML"),
    ("broker: {url: amqps://federationd:SECRET@mq: x}\n", "not valid YAML"),
    ('broker: "amqps://federationd:SECRET@mq.site-a.example:5671/federation"\n', "broker"),
    ("\tsite: x\npassword: SECRET\n", "not valid YAML"),
])
def test_unreadable_yaml(write: Callable[[str], Path], text: str, fragment: str) -> None:
    assert fragment in refused(write(text))


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read config" in refused(tmp_path / "nope.yaml")


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    assert "cannot read config" in refused(tmp_path)


@pytest.mark.parametrize("url", [
    "amqps://federationd:SECRET@mq.site-a.example:5671",
    "amqp://federationd:SECRET@mq.site-a.example:5671/federation",
    "amqps://federationd:SECRET@[::1/federation",
    "amqps://federationd:SECRET@mq.site-a.example:port/federation",
    "federationd:SECRET@mq.site-a.example",
])
def test_password_never_echoed_for_a_bad_broker_url(write: Callable[[str], Path], spec_dict: dict[str, Any],
                                                    url: str) -> None:
    spec_dict["broker"]["url"] = url
    spec_dict["broker"]["public_url"] = url  # wrong twice over: with credentials and broken
    spec_dict["broker"]["management_url"] = url.replace("amqps://", "http://")
    assert "broker" in refused(write(yaml.safe_dump(spec_dict)))


def test_password_never_echoed_with_many_errors(write: Callable[[str], Path], spec_dict: dict[str, Any]) -> None:
    for _, mutate, _ in REFUSALS:
        with contextlib.suppress(KeyError, TypeError):  # later mutations may hit what earlier ones dropped
            mutate(spec_dict)
    message = refused(write(yaml.safe_dump(spec_dict)))
    assert message.count(";") >= 3  # every problem is listed, still on one line


def test_config_is_frozen(write: Callable[[str], Path], spec_text: str) -> None:
    config = load_config(write(spec_text))
    with pytest.raises(Exception, match="frozen"):
        config.paused = True  # type: ignore[misc]


# -- where the config comes from ---------------------------------------------------------------------------------

def test_config_path_explicit_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDERATIOND_CONFIG", str(tmp_path / "env.yaml"))
    assert config_path(tmp_path / "explicit.yaml") == tmp_path / "explicit.yaml"
    assert config_path(str(tmp_path / "explicit.yaml")) == tmp_path / "explicit.yaml"


def test_config_path_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FEDERATIOND_CONFIG", str(tmp_path / "env.yaml"))
    assert config_path(None) == tmp_path / "env.yaml"
    assert config_path("") == tmp_path / "env.yaml"


@pytest.mark.parametrize("env", [None, ""])
def test_config_path_default(monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    if env is None:
        monkeypatch.delenv("FEDERATIOND_CONFIG", raising=False)
    else:
        monkeypatch.setenv("FEDERATIOND_CONFIG", env)
    assert config_path(None) == Path("/etc/federationd/federationd.yaml")
    assert Path("/etc/federationd/federationd.yaml") == config_module.DEFAULT_CONFIG_PATH


def test_load_config_follows_the_environment(monkeypatch: pytest.MonkeyPatch, write: Callable[[str], Path],
                                             spec_text: str) -> None:
    monkeypatch.setenv("FEDERATIOND_CONFIG", str(write(spec_text)))
    assert load_config().site.id == "site-a"


# -- file permissions --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "warned"), [(0o644, True), (0o604, True), (0o666, True), (0o600, False),
                                              (0o640, False), (0o400, False)])
def test_permission_problem(write: Callable[[str], Path], spec_text: str, mode: int, warned: bool) -> None:
    path = write(spec_text)
    os.chmod(path, mode)
    problem = permission_problem(path)
    if warned:
        assert problem is not None
        assert str(path) in problem
        assert PASSWORD not in problem
    else:
        assert problem is None


def test_permission_problem_of_a_missing_file(tmp_path: Path) -> None:
    assert permission_problem(tmp_path / "nope.yaml") is None


@pytest.mark.parametrize("where", ["broker", "links"])
def test_password_never_echoed_from_a_key(write: Callable[[str], Path], spec_dict: dict[str, Any],
                                          where: str) -> None:
    spec_dict[where]["url amqps://federationd:SECRET@mq.site-a.example:5671/federation"] = "x"
    with pytest.raises(ConfigError) as caught:
        load_config(write(yaml.safe_dump(spec_dict)))
    assert PASSWORD not in str(caught.value)


# --------------------------------------------------------------------------------------------------------------
# YAML that is safe to edit at 3 a.m.


def test_duplicate_key_refused_naming_both_lines(write: Callable[[str], Path], spec_text: str) -> None:
    text = spec_text.replace("paused: false\n", "paused: true\n", 1) + "paused: false\n"
    first = text.splitlines().index("paused: true") + 1
    last = len(text.splitlines())
    message = refused(write(text))
    assert "duplicate key 'paused'" in message and f"line {last}" in message and f"line {first}" in message


def test_duplicate_key_in_a_nested_mapping(write: Callable[[str], Path], spec_text: str) -> None:
    text = spec_text.replace("site-b: {paused: false}", "site-b: {paused: true, paused: false}")
    assert "duplicate key 'paused'" in refused(write(text))


def test_duplicate_partner_section(write: Callable[[str], Path], spec_text: str) -> None:
    text = spec_text.replace("  site-b: {paused: false}\n", "  site-b: {paused: false}\n  site-b: {paused: true}\n")
    assert "duplicate key 'site-b'" in refused(write(text))


@pytest.mark.parametrize(("typo", "meant"), [("pasued", "paused"), ("schedule.quiet_perod", "quiet_period"),
                                             ("links.site-b.pausd", "paused"), ("brokr", "broker")])
def test_unknown_key_did_you_mean(write: Callable[[str], Path], spec_dict: dict[str, Any], typo: str,
                                  meant: str) -> None:
    *parents, last = typo.split(".")
    target = spec_dict
    for part in parents:
        target = target[part]
    target[last] = target.get(meant, True) if not parents else True
    message = refused(write(yaml.safe_dump(spec_dict)))
    assert f"unknown key '{typo}'" in message and f"did you mean '{meant}'?" in message


def test_unknown_key_far_from_any_gets_no_guess(write: Callable[[str], Path], spec_dict: dict[str, Any]) -> None:
    spec_dict["zzzz"] = 1
    message = refused(write(yaml.safe_dump(spec_dict)))
    assert "unknown key 'zzzz'" in message and "did you mean" not in message


def test_unknown_partner_warned(write: Callable[[str], Path], spec_text: str) -> None:
    config = load_config(write(spec_text.replace("site-b: {paused: false}", "site-bb: {paused: true}")))
    warnings = config_module.unknown_partners(config, {"site-b", "site-c"})
    assert len(warnings) == 1 and "'site-bb' names no known partner" in warnings[0] and "'site-b'?" in warnings[0]
    assert config_module.unknown_partners(config, {"site-bb"}) == []
