"""Checks for the deployment artifacts in deploy/: systemd unit, Prometheus scrape/alert rules, Grafana dashboard.

External tools (systemd-analyze, systemd-sysusers, promtool) are used when installed; a test that needs a missing
tool is skipped with the reason, except under CI=true, where a missing tool is a failure (CI must install them:
`apt-get install systemd prometheus` provides all three on Debian/Ubuntu).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
UNIT = DEPLOY / "federationd.service"
TEMPLATE = DEPLOY / "federationd@.service"
UNITS = [UNIT, TEMPLATE]
SYSUSERS = DEPLOY / "sysusers.d" / "federationd.conf"
FEDERATIOND_BIN = "/opt/federationd/bin/federationd"
PROM = DEPLOY / "prometheus"
SCRAPE = PROM / "scrape.yml"
RULES = PROM / "federationd-rules.yml"
RULES_TEST = PROM / "federationd-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "federationd-dashboard.json"

# The metric names the artifacts may use (the daemon must export every one of them).
PER_LINK_METRICS = {  # labelled site=<partner> (plus category / reason where noted)
    "federationd_outbox_pending_records",
    "federationd_outbox_lag_seconds",
    "federationd_inbound_queue_messages",
    "federationd_last_send_timestamp_seconds",
    "federationd_next_send_timestamp_seconds",
    "federationd_sent_records_total",  # + category
    "federationd_received_records_total",  # + category
    "federationd_rejected_records_total",  # + reason
    "federationd_send_errors_total",
    "federationd_link_up",
    "federationd_link_paused",
    "federationd_link_handshake_pending",
}
SITE_WIDE_METRICS = {  # no site label
    "federationd_config_last_reload_successful",
    "federationd_quiet_period_seconds",
    "federationd_max_delay_seconds",
    "federationd_paused",
    "federationd_build_info",  # labelled version and host
}
RUNTIME_METRICS = {  # supervision (issue 10): alerts use them; the dashboard need not show each
    "federationd_consumer_up",
    "federationd_active",
    "federationd_scrape_errors_total",
    "federationd_dead_letter_messages",  # site
    "federationd_last_receive_timestamp_seconds",  # site
    "federationd_limit_exceeded",  # limit (a `limits:` key)
}
PINNED_METRICS = PER_LINK_METRICS | SITE_WIDE_METRICS | RUNTIME_METRICS

EXPECTED_ALERTS = {
    # alert name: (for, severity)
    "FederationdDown": ("5m", "critical"),
    "FederationdLagHigh": ("10m", "warning"),
    "FederationdNothingSent": ("10m", "critical"),
    "FederationdLinkDown": ("15m", "warning"),
    "FederationdSendErrors": ("10m", "warning"),
    "FederationdRejectedRecords": ("1m", "warning"),
    "FederationdConfigReloadFailed": ("1m", "warning"),
    "FederationdSitePaused": ("24h", "info"),
    "FederationdLinkPaused": ("24h", "info"),
    "FederationdConsumerDown": ("5m", "critical"),
    "FederationdInboundBacklog": ("15m", "warning"),
    "FederationdDeadLetters": ("5m", "warning"),
    "FederationdLimitExceeded": ("1h", "warning"),
}

TIMEOUT = 120


# --------------------------------------------------------------------------------------------------------------
# helpers


def need_tool(name: str) -> str:
    """Path of an external tool; skip (or fail under CI=true) when it is not installed."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (Debian/Ubuntu: apt-get install {TOOL_PACKAGES.get(name, name)})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    return path


TOOL_PACKAGES = {"promtool": "prometheus", "systemd-analyze": "systemd", "systemd-sysusers": "systemd"}


def run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="cat", SYSTEMD_LOG_COLOR="0")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit file as {section: [(key, value), ...]} in file order (keys may repeat)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    logical: list[str] = []
    lines: list[str] = []
    for raw in text.splitlines():  # join backslash continuations
        if raw.endswith("\\"):
            logical.append(raw[:-1])
            continue
        logical.append(raw)
        lines.append(" ".join(part.strip() for part in logical))
        logical = []
    for raw in lines:
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, [])
            continue
        assert current is not None, f"directive outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {line!r}"
        sections[current].append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def single(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, f"[{section}] {key}= expected exactly once, found {found!r}"
    return found[0]


_PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "inf",
    "nan",
    "atan2",
}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (a small tokenizer: enough for the expressions we ship)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals (label values, label_replace args)
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range / subquery selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    s = re.sub(r"\boffset\s+-?[0-9][0-9a-z]*", " ", s)  # offset durations
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        token = m.group(0)
        if token in _PROMQL_KEYWORDS or s[m.end() :].lstrip().startswith("("):
            continue  # keyword or function call
        names.add(token)
    return names


def federationd_names(expr: str) -> set[str]:
    return set(re.findall(r"federationd_[a-z_]+", expr))


def load_rules() -> dict:
    with RULES.open() as f:
        return yaml.safe_load(f)


def alert_rules() -> list[dict]:
    groups = load_rules()["groups"]
    return [rule for group in groups for rule in group["rules"]]


def load_dashboard() -> dict:
    with DASHBOARD.open() as f:
        return json.load(f)


def all_panels(panels: list[dict]) -> list[dict]:
    out = []
    for panel in panels:
        out.append(panel)
        out.extend(all_panels(panel.get("panels", [])))  # collapsed rows nest their panels
    return out


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (panel.get("title", ""), target["expr"])
        for panel in all_panels(load_dashboard()["panels"])
        for target in panel.get("targets", [])
        if "expr" in target
    ]


# --------------------------------------------------------------------------------------------------------------
# systemd unit

REQUIRED_SERVICE_DIRECTIVES = {
    "Type": "notify",
    "NotifyAccess": "main",
    "ExecStart": f"{FEDERATIOND_BIN} -c /etc/federationd/federationd.yaml run",
    "RestartPreventExitStatus": "78",
    "WatchdogSec": "60",
    "Restart": "on-failure",
    "RestartSec": "5",
    "TimeoutStopSec": "60",
    "User": "federationd",
    "Group": "federationd",
    "StateDirectory": "federationd",
    "ConfigurationDirectory": "federationd",
    "ProtectSystem": "strict",
    "ProtectHome": "true",
    "PrivateTmp": "true",
    "PrivateDevices": "true",
    "NoNewPrivileges": "true",
    "ProtectKernelTunables": "true",
    "ProtectKernelModules": "true",
    "ProtectKernelLogs": "true",
    "ProtectControlGroups": "true",
    "ProtectClock": "true",
    "ProtectHostname": "true",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "true",
    "RestrictRealtime": "true",
    "RestrictSUIDSGID": "true",
    "LockPersonality": "true",
    "MemoryDenyWriteExecute": "true",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "UMask": "0077",
    "ReadWritePaths": "/var/lib/federationd",
    "Environment": "PYTHONUNBUFFERED=1",
}


@pytest.mark.parametrize("unit_file", UNITS, ids=lambda p: p.name)
def test_unit_has_required_directives(unit_file: Path) -> None:
    text = unit_file.read_text()
    unit = parse_unit(text)
    config = "/etc/federationd/%i.yaml" if unit_file == TEMPLATE else "/etc/federationd/federationd.yaml"
    assert set(unit) == {"Unit", "Service", "Install"}
    instance = {"ExecStart": f"{FEDERATIOND_BIN} -c {config} run", "StateDirectory": "federationd/%i",
                "ReadWritePaths": "/var/lib/federationd/%i"} if unit_file == TEMPLATE else {}
    for key, expected in REQUIRED_SERVICE_DIRECTIVES.items():
        assert single(unit, "Service", key) == instance.get(key, expected), key
    # check-config first: a bad file fails `systemctl reload` and the daemon is never signalled
    assert values(unit, "Service", "ExecReload") == [f"{FEDERATIOND_BIN} -c {config} check-config",
                                                     "/bin/kill -HUP $MAINPID"]
    assert {v.split(":")[0] for v in values(unit, "Service", "LoadCredential")} == {"broker", "management",
                                                                                   "database"}
    assert values(unit, "Service", "SystemCallFilter") == ["@system-service", "~@privileged @resources"]
    assert not values(unit, "Service", "DynamicUser"), "the state dir and database need a fixed owner"
    assert not values(unit, "Service", "LogsDirectory"), "logs go to journald"
    assert single(unit, "Install", "WantedBy") == "multi-user.target"
    assert "network-online.target" in " ".join(values(unit, "Unit", "After"))
    assert "network-online.target" in " ".join(values(unit, "Unit", "Wants"))


def test_unit_header_explains_choices() -> None:
    header = "\n".join(line for line in UNIT.read_text().splitlines() if line.startswith("#"))
    for word in (
        "Type=notify",
        "WatchdogSec",
        "DynamicUser",
        "StateDirectory",
        "MemoryDenyWriteExecute",
        "SystemCallFilter",
        "UMask",
        "sysusers",
    ):
        assert word in header, f"the comment header should explain {word}"


def _verifiable_copy(tmp_path: Path, text: str, name: str = "federationd.service") -> Path:
    """The unit in a private directory, federationd replaced by a binary that exists here (verify checks it)."""
    true_bin = shutil.which("true")
    assert true_bin, "no `true` executable"
    text, n = re.subn(
        rf"^(Exec(Start|Reload)=[-@:+!]*){re.escape(FEDERATIOND_BIN)}\b", rf"\g<1>{true_bin}", text,
        flags=re.MULTILINE,
    )
    assert n == 2, f"ExecStart= and ExecReload= running {FEDERATIOND_BIN} not found"
    unit_dir = tmp_path / "unit"
    unit_dir.mkdir()
    path = unit_dir / (name.replace("@.", "@site-a.") if "@." in name else name)
    path.write_text(text)
    return path


def _verify_problems(systemd_analyze: str, path: Path) -> list[str]:
    """Run `systemd-analyze verify` and return what is wrong with *this* unit.

    The rule: verify's exit status must be 0, and no output line may be about our unit (it names the unit file's
    path, as in `/tmp/.../federationd.service:12: Unknown key ...`, or `federationd.service:`), except for host
    conditions that say nothing about the file (the user not existing on this machine, not booted with systemd,
    no bus). Exit status alone is not enough: systemd logs an unknown key or an unparsable value ("..., ignoring")
    and still exits 0. Lines about other units (loaded through After=/Wants=) are not ours to judge.
    """
    help_text = run([systemd_analyze, "--help"]).stdout
    cmd = [systemd_analyze, "verify"]
    if "--man" in help_text:
        cmd.append("--man=no")
    cmd.append(str(path))
    proc = run(cmd, cwd=path.parent)
    benign = re.compile(
        r"(not been booted with systemd|Failed to connect to (the )?bus|"
        r"(user|group) .*(not found|does not exist|unknown)|No such (user|group)|"
        r"Failed to resolve (user|group))",
        re.IGNORECASE,
    )
    ours = (str(path), str(path.parent), path.name)
    problems = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if any(mark in line for mark in ours) and not benign.search(line)
    ]
    if proc.returncode != 0:
        problems.append(f"systemd-analyze verify exited {proc.returncode}: {proc.stderr.strip()}")
    return problems


@pytest.mark.parametrize("unit_file", UNITS, ids=lambda p: p.name)
def test_unit_passes_systemd_analyze_verify(tmp_path: Path, unit_file: Path) -> None:
    systemd_analyze = need_tool("systemd-analyze")
    path = _verifiable_copy(tmp_path, unit_file.read_text(), unit_file.name)
    assert _verify_problems(systemd_analyze, path) == []


@pytest.mark.parametrize(
    ("find", "replace"),
    [
        ("ProtectSystem=strict", "ProtectSystem=very-strict"),
        ("WatchdogSec=60", "WatchdogSec=sixty"),
        ("NoNewPrivileges=true", "NoNewPrivileges=true\nProtectEverything=yes"),
    ],
)
def test_verify_rule_catches_a_broken_unit(tmp_path: Path, find: str, replace: str) -> None:
    """The verify rule above is meaningful: a bad value or an unknown key in the unit is reported."""
    systemd_analyze = need_tool("systemd-analyze")
    text, n = re.subn(rf"^{re.escape(find)}$", replace, UNIT.read_text(), count=1, flags=re.MULTILINE)
    assert n == 1, find
    path = _verifiable_copy(tmp_path, text)
    assert _verify_problems(systemd_analyze, path) != []


@pytest.mark.parametrize("unit_file", UNITS, ids=lambda p: p.name)
def test_unit_security_exposure(tmp_path: Path, unit_file: Path) -> None:
    """`systemd-analyze security` rates the sandbox OK (exposure at most 1.5 of 10)."""
    systemd_analyze = need_tool("systemd-analyze")
    help_text = run([systemd_analyze, "--help"]).stdout
    if "--offline" not in help_text or "--threshold" not in help_text:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)("systemd-analyze: no security --offline")
    path = _verifiable_copy(tmp_path, unit_file.read_text(), unit_file.name)
    proc = run(
        [systemd_analyze, "security", "--offline=true", "--threshold=15", "--man=no", str(path)], cwd=path.parent
    )
    overall = [line for line in proc.stdout.splitlines() if "Overall exposure" in line]
    assert proc.returncode == 0, f"exposure above 1.5: {overall or proc.stdout[-2000:]} {proc.stderr[-2000:]}"


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    sysusers = need_tool("systemd-sysusers")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    proc = run([sysusers, f"--root={root}", str(SYSUSERS)])
    assert proc.returncode == 0, proc.stderr
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    entry = next(line.split(":") for line in passwd if line.startswith("federationd:"))
    assert entry[5] == "/var/lib/federationd"
    assert entry[6] in ("/usr/sbin/nologin", "/sbin/nologin")
    assert any(line.startswith("federationd:") for line in (root / "etc" / "group").read_text().splitlines())


# --------------------------------------------------------------------------------------------------------------
# Prometheus


def test_promtool_check_rules() -> None:
    promtool = need_tool("promtool")
    proc = run([promtool, "check", "rules", str(RULES)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in proc.stdout


def test_promtool_test_rules() -> None:
    promtool = need_tool("promtool")
    proc = run([promtool, "test", "rules", RULES_TEST.name], cwd=PROM)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_check_config_with_scrape_job_and_rules(tmp_path: Path) -> None:
    promtool = need_tool("promtool")
    with SCRAPE.open() as f:
        scrape = yaml.safe_load(f)
    jobs = scrape["scrape_configs"]
    assert [job["job_name"] for job in jobs] == ["federationd"]
    assert jobs[0]["static_configs"][0]["targets"] == ["127.0.0.1:9464"]
    assert [Path(p).name for p in scrape["rule_files"]] == [RULES.name]
    config = {
        "global": {"scrape_interval": "30s", "evaluation_interval": "30s"},
        "rule_files": [str(RULES)],
        "scrape_configs": jobs,
    }
    prometheus_yml = tmp_path / "prometheus.yml"
    prometheus_yml.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = run([promtool, "check", "config", str(prometheus_yml)], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in proc.stdout


def test_alert_rules_structure() -> None:
    groups = load_rules()["groups"]
    assert [g["name"] for g in groups] == ["federationd"]
    rules = alert_rules()
    assert {r["alert"] for r in rules} == set(EXPECTED_ALERTS)
    assert len(rules) == len(EXPECTED_ALERTS)
    for rule in rules:
        name = rule["alert"]
        expected_for, expected_severity = EXPECTED_ALERTS[name]
        assert rule["for"] == expected_for, name
        assert rule["labels"] == {"severity": expected_severity}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}", name
        assert f"### {name}\n" in (REPO / "docs" / "operations.md").read_text(), f"no runbook section for {name}"
        assert all(str(v).strip() for v in annotations.values()), name


def test_alert_expressions_follow_the_contract() -> None:
    exprs = {r["alert"]: " ".join(r["expr"].split()) for r in alert_rules()}
    assert exprs["FederationdDown"] == 'up{job="federationd"} == 0'
    assert "on(instance) group_left()" in exprs["FederationdLagHigh"]
    assert "federationd_quiet_period_seconds + federationd_max_delay_seconds" in exprs["FederationdLagHigh"]
    assert "federationd_max_delay_seconds + 900" in exprs["FederationdNothingSent"]
    assert "federationd_link_up == 0" in exprs["FederationdLinkDown"]
    assert "unless on(instance, site) (federationd_link_handshake_pending == 1)" in exprs["FederationdLinkDown"]
    assert "increase(federationd_send_errors_total[30m])" in exprs["FederationdSendErrors"]
    assert "increase(federationd_rejected_records_total[15m]) > 0" in exprs["FederationdRejectedRecords"]
    assert exprs["FederationdConfigReloadFailed"] == "federationd_config_last_reload_successful == 0"
    assert exprs["FederationdSitePaused"] == "federationd_paused == 1"


def test_alert_rules_use_only_pinned_metrics() -> None:
    used: set[str] = set()
    for rule in alert_rules():
        expr = rule["expr"]
        assert federationd_names(expr) <= PINNED_METRICS, (rule["alert"], federationd_names(expr) - PINNED_METRICS)
        names = promql_metric_names(expr)
        assert names <= PINNED_METRICS | {"up"}, (rule["alert"], names - PINNED_METRICS - {"up"})
        assert names, rule["alert"]
        used |= names
    assert "up" in used


def test_rule_tests_cover_every_alert() -> None:
    with RULES_TEST.open() as f:
        suite = yaml.safe_load(f)
    assert [Path(p).name for p in suite["rule_files"]] == [RULES.name]
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in suite["tests"]:
        for case in test.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert fired == set(EXPECTED_ALERTS), f"never shown firing: {set(EXPECTED_ALERTS) - fired}"
    assert {"FederationdLagHigh", "FederationdNothingSent"} <= quiet


# --------------------------------------------------------------------------------------------------------------
# Grafana


def test_dashboard_metadata_and_variables() -> None:
    dash = load_dashboard()
    assert dash["uid"] == "federationd"
    assert dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert set(variables) >= {"datasource", "site", "instance"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    site = variables["site"]
    assert site["type"] == "query"
    assert site["multi"] is True and site["includeAll"] is True
    site_query = site["query"]["query"] if isinstance(site["query"], dict) else site["query"]
    assert re.fullmatch(r"label_values\(federationd_link_up(\{[^}]*\})?,\s*site\)", site_query), site_query
    assert variables["instance"]["type"] == "query"
    instance = variables["instance"]["query"]
    instance_query = instance["query"] if isinstance(instance, dict) else instance
    # from `up`, so that a fresh site with no link yet (no federationd_link_up series) appears
    assert instance_query == 'label_values(up{job="federationd"}, instance)', instance_query
    for name in ("site", "instance"):
        assert variables[name]["datasource"]["uid"] == "${datasource}"


def test_dashboard_panels_are_well_formed() -> None:
    dash = load_dashboard()
    panels = all_panels(dash["panels"])
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    defined = {v["name"] for v in dash["templating"]["list"]}
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            for var in re.findall(r"\$\{?(\w+)", target["expr"]):
                assert var in defined or var.startswith("__"), (panel["title"], var)


def test_dashboard_uses_only_pinned_metrics_and_covers_every_link_metric() -> None:
    used: set[str] = set()
    for title, expr in dashboard_exprs():
        assert federationd_names(expr) <= PINNED_METRICS, (title, federationd_names(expr) - PINNED_METRICS)
        names = promql_metric_names(expr)
        assert names <= PINNED_METRICS | {"up"}, (title, names - PINNED_METRICS)
        used |= names
    assert used >= PER_LINK_METRICS, f"no panel shows {sorted(PER_LINK_METRICS - used)}"
    assert "federationd_config_last_reload_successful" in used


def test_dashboard_has_the_expected_panels() -> None:
    panels = [p for p in all_panels(load_dashboard()["panels"]) if p["type"] != "row"]

    def panels_with(metric: str) -> list[dict]:
        return [p for p in panels if any(metric in t["expr"] for t in p["targets"])]

    assert any(p["type"] in ("stat", "state-timeline") for p in panels_with("federationd_link_up"))
    assert any(p["type"] in ("stat", "state-timeline") for p in panels_with("federationd_link_paused"))
    lag = [p for p in panels_with("federationd_outbox_lag_seconds") if p["type"] == "timeseries"]
    assert lag, "outbox lag timeseries"
    assert any(
        any("federationd_quiet_period_seconds" in t["expr"] for t in p["targets"])
        or p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] != "off"
        for p in lag
    ), "the lag panel shows a threshold line"
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    assert re.search(r"rate\(federationd_sent_records_total\{[^}]*\}\[\$__rate_interval\]\)", exprs)
    assert re.search(r"rate\(federationd_received_records_total\{[^}]*\}\[\$__rate_interval\]\)", exprs)
    assert "[5m]" not in exprs, "rates use $__rate_interval (a fixed window breaks at other scrape intervals)"
    rows = [p["title"] for p in load_dashboard()["panels"] if p["type"] == "row"]
    assert rows[0] == "Fleet", rows
    fleet = " ".join(expr for title, expr in dashboard_exprs() if title.startswith("Fleet"))
    assert 'up{job="federationd"}' in fleet and "federationd_build_info" in fleet
    assert "by (site, category)" in exprs and "by (site, reason)" in exprs
    assert re.search(r"time\(\) - federationd_last_send_timestamp_seconds", exprs)


def test_dashboard_promql_parses(tmp_path: Path) -> None:
    """Every dashboard query, with its variables filled in, is valid PromQL (promtool evaluates it on no data)."""
    promtool = need_tool("promtool")
    builtins = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}

    def fill(expr: str) -> str:
        for var, value in builtins.items():
            expr = expr.replace(var, value)
        return (
            expr.replace("${instance}", "fed-a:9464")
            .replace("$instance", "fed-a:9464")
            .replace("${site}", ".*")
            .replace("$site", ".*")
        )

    suite = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [],
                "promql_expr_test": [
                    {"expr": fill(e), "eval_time": "1m", "exp_samples": []} for _, e in dashboard_exprs()
                ],
            }
        ],
    }
    path = tmp_path / "dashboard-promql.test.yml"
    path.write_text(yaml.safe_dump(suite))
    proc = run([promtool, "test", "rules", path.name], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promql_metric_name_tokenizer() -> None:
    expr = (
        'sum by (site, category) (rate(federationd_sent_records_total{instance="$instance", site=~"$site"}[5m])) '
        "> on(instance) group_left() (federationd_max_delay_seconds + 900) "
        'and on(instance) (up{job="federationd"} offset 15m) unless foo_bar[$__rate_interval]'
    )
    assert promql_metric_names(expr) == {
        "federationd_sent_records_total",
        "federationd_max_delay_seconds",
        "up",
        "foo_bar",
    }
