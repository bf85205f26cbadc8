"""The typed, validated site configuration (docs/configuration.md) and where it is read from.

Unknown keys and impossible values are refused with a `ConfigError` naming the file and the key. Secrets (the
password in `broker.url`) are never echoed in an error.
"""

from __future__ import annotations

import difflib
import importlib.util
import ipaddress
import logging
import os
import re
import stat
import types
import typing
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

from federationd import bounds, credentials, limits, windows
from federationd.durations import parse_duration
from federationd.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH = Path("/etc/federationd/federationd.yaml")
CONFIG_ENV = "FEDERATIOND_CONFIG"

# Site ids become parts of broker user names (`fed.H.P`), routing keys and queue names: keep them to a safe set.
# `scheme://user:password@` anywhere in a message (a URL pasted as a key would otherwise be echoed).
_CREDENTIALS_IN_URL = re.compile(r"([a-z][a-z0-9+.-]*://[^\s:/@]*):[^\s@]*@", re.IGNORECASE)
SITE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


def _site_id(value: str) -> str:
    if not SITE_ID.match(value):
        raise ValueError(f"invalid site id {value!r} (lower-case letters, digits and '-', at most 63)")
    return value


SiteId = Annotated[str, BeforeValidator(lambda v: _site_id(str(v)))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSection(Strict):
    id: SiteId
    company: str = Field(min_length=1)
    name: str = Field(min_length=1)


class DatabaseSection(Strict):
    url: str
    password_file: Path | None = None  # when the URL leaves the password out (else $CREDENTIALS_DIRECTORY/database)

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql")):
            raise ValueError("database.url must be sqlite:///PATH or postgresql+psycopg://...")
        if value.rstrip("/") in ("sqlite:", "sqlite://") or value.startswith("sqlite:///:memory:"):
            raise ValueError("database.url needs a file: sqlite:///PATH (an in-memory database loses everything)")
        if value.startswith("postgresql") and importlib.util.find_spec("psycopg") is None:
            raise ValueError("a PostgreSQL database needs its driver: pip install 'federationd[postgresql]'")
        return value


def _amqps_endpoint(value: str, *, credentials: bool) -> str:
    parts = urlsplit(value)
    if parts.scheme != "amqps":
        raise ValueError("must be an amqps:// URL (federationd talks to brokers over TLS only)")
    if not parts.hostname:
        raise ValueError("has no host name")
    try:
        port = parts.port  # reading it validates it (urlsplit only checks the port when asked)
    except ValueError:
        port = 0
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("has a port out of range (1-65535)")
    if credentials and not parts.username:
        raise ValueError("must carry the broker user (amqps://USER[:PASSWORD]@HOST:5671/VHOST; a password left "
                         "out is read from broker.password_file or $CREDENTIALS_DIRECTORY/broker)")
    if not credentials and (parts.username or parts.password):
        raise ValueError("must not carry credentials: partners get their own")
    if len(parts.path.lstrip("/")) == 0:
        raise ValueError("must name the vhost (amqps://HOST:5671/VHOST)")
    return value


amqps_endpoint = _amqps_endpoint  # the same rule for a partner's public endpoint when it arrives


MAX_BROKER_NODES = 16  # nodes of one cluster in `broker.url` or `broker.public_url`


def _node_list(value: object) -> object:
    """A URL, or a list of URLs (the nodes of one cluster); a list of one is that URL."""
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("an empty list: give one amqps:// URL or a list of the cluster's nodes")
        if len(value) > MAX_BROKER_NODES:
            raise ValueError(f"{len(value)} nodes: at most {MAX_BROKER_NODES} per cluster")
        if not all(isinstance(item, str) for item in value):
            raise ValueError("every node is an amqps:// URL (text)")
        return value[0] if len(value) == 1 else list(value)
    return value


NodeUrls = Annotated[str | list[str], BeforeValidator(_node_list)]


def nodes(value: str | list[str]) -> tuple[str, ...]:
    """The node URLs of a `broker.url` or `broker.public_url` value, in the order given."""
    return (value,) if isinstance(value, str) else tuple(value)


def same_cluster(urls: tuple[str, ...], *, credentials: bool) -> None:
    """Every node of one cluster: amqps, the same vhost (and, with credentials, the same user and password)."""
    if len(urls) > MAX_BROKER_NODES:
        raise ValueError(f"{len(urls)} nodes: at most {MAX_BROKER_NODES} per cluster")
    for number, url in enumerate(urls, 1):
        try:
            _amqps_endpoint(url, credentials=credentials)
        except ValueError as exc:
            raise ValueError(f"node {number} of {len(urls)} {exc}" if len(urls) > 1 else str(exc)) from None
    if len(urls) == 1:
        return
    split = [urlsplit(url) for url in urls]
    where = [f"{(p.hostname or '').lower()}:{p.port or 5671}" for p in split]
    if len(set(where)) < len(where):
        twice = next(w for w in where if where.count(w) > 1)
        raise ValueError(f"node {twice} is listed twice")
    for what, values in (("vhost", [unquote(p.path) for p in split]), ("user", [p.username for p in split])):
        differs = next((i for i, v in enumerate(values) if v != values[0]), None)
        if differs is not None:
            raise ValueError(f"every node of one cluster has the same {what}: node {differs + 1} differs from node 1 "
                             "(a list names the nodes of one cluster, not several brokers)")
    if credentials and len({p.password for p in split}) > 1:
        raise ValueError("every node of one cluster has the same password, or none (it is then read from "
                         "broker.password_file or $CREDENTIALS_DIRECTORY/broker)")


class BrokerSection(Strict):
    url: NodeUrls
    management_url: str
    public_url: NodeUrls
    password_file: Path | None = None
    management_password_file: Path | None = None
    # Members of each quorum queue we declare (x-quorum-initial-group-size); unset: the broker's default (every
    # cluster node, up to its limit).
    quorum_group_size: int | None = Field(default=None, ge=1, le=MAX_BROKER_NODES)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | list[str]) -> str | list[str]:
        same_cluster(nodes(value), credentials=True)
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | list[str]) -> str | list[str]:
        same_cluster(nodes(value), credentials=False)
        return value

    @field_validator("management_url")
    @classmethod
    def _management(cls, value: str) -> str:
        if urlsplit(value).scheme != "https" or not urlsplit(value).hostname:
            raise ValueError("must be an https:// URL (the management API is used over TLS only)")
        return value.rstrip("/")

    @property
    def urls(self) -> tuple[str, ...]:
        """Our own broker's nodes (one, or the nodes of its cluster)."""
        return nodes(self.url)

    @property
    def public_urls(self) -> tuple[str, ...]:
        """What partners connect to: one node, or every public node of our cluster."""
        return nodes(self.public_url)


class TlsSection(Strict):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _pair(self) -> TlsSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate and its key)")
        for name in ("ca_file", "cert_file", "key_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file {str(path)!r}")
        return self


class ScheduleSection(Strict):
    quiet_period: Duration = timedelta(minutes=15)
    max_delay: Duration = timedelta(hours=2)
    busy_retry: Duration = timedelta(minutes=15)
    # When a snapshot may start (site-local HH:MM-HH:MM, federationd/windows.py); absent: at any time.
    snapshot_windows: list[str] | None = None
    utc_offset: str = "+00:00"  # site-local time for snapshot_windows: a fixed offset, no daylight saving

    @field_validator("snapshot_windows")
    @classmethod
    def _windows(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("snapshot_windows is empty, so a snapshot could never start: list at least one "
                             "window (HH:MM-HH:MM), or remove the key to allow snapshots at any time")
        for text in value:
            windows.parse_window(text)
        return value

    @field_validator("utc_offset")
    @classmethod
    def _offset(cls, value: str) -> str:
        windows.parse_offset(value)
        return value

    @model_validator(mode="after")
    def _positive(self) -> ScheduleSection:
        for name in ("quiet_period", "max_delay", "busy_retry"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be longer than 0")
        if self.max_delay < self.quiet_period:
            raise ValueError("max_delay must not be shorter than quiet_period")
        return self

    @property
    def parsed_windows(self) -> tuple[windows.Window, ...]:
        """The parsed snapshot windows; empty when snapshots may start at any time."""
        return tuple(windows.parse_window(text) for text in self.snapshot_windows or ())

    @property
    def utc_offset_seconds(self) -> int:
        return windows.parse_offset(self.utc_offset)

    def snapshot_allowed_at(self, now: float) -> float:
        """When a snapshot due at `now` may start (`now` itself inside a window or without windows)."""
        return windows.next_allowed(now, self.parsed_windows, self.utc_offset_seconds)


class LimitsSection(Strict):
    """The manual's figures (federationd/limits.py); raise them only for a site that has measured it can."""

    max_sites: int = Field(default=limits.Limits.max_sites, ge=1)
    max_employees: int = Field(default=limits.Limits.max_employees, ge=1)
    recommended_sites: int = Field(default=limits.Limits.recommended_sites, ge=1)
    recommended_employees_per_site: int = Field(default=limits.Limits.recommended_employees_per_site, ge=1)
    recommended_employees: int = Field(default=limits.Limits.recommended_employees, ge=1)

    @model_validator(mode="after")
    def _ordered(self) -> LimitsSection:
        pairs = (("recommended_sites", "max_sites"), ("recommended_employees", "max_employees"),
                 ("recommended_employees_per_site", "max_employees"))
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not be above {high} ({getattr(self, high)})")
        return self

    def as_limits(self) -> limits.Limits:
        return limits.Limits(**self.model_dump())


class VisitPolicy(Strict):
    """Which of our employees may sign in to the partner; every list empty or absent means everybody."""

    employees: list[str] = []
    departments: list[str] = []
    groups: list[str] = []
    positions: list[str] = []


class NetworkRole(Strict):
    cidr: str
    role: str

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError as exc:
            raise ValueError(f"invalid CIDR {value!r}") from exc


class AcceptGrant(Strict):
    role: str = Field(min_length=1)
    products: list[str] | None = None
    restrictions: list[str] = []
    networks: list[NetworkRole] = []


class AcceptRule(AcceptGrant):
    employee: str | None = None
    department: str | None = None
    position: str | None = None

    @model_validator(mode="after")
    def _level(self) -> AcceptRule:
        if self.employee is None and self.department is None and self.position is None:
            raise ValueError("a rule names an employee, a department and/or a position (site-wide goes in default)")
        if self.employee is not None and (self.department is not None or self.position is not None):
            raise ValueError("an employee rule names only the employee")
        return self


class AcceptPolicy(Strict):
    default: AcceptGrant = AcceptGrant(role="read")
    rules: list[AcceptRule] = []


class LinkSection(Strict):
    paused: bool = False
    visit: VisitPolicy | None = None
    accept: AcceptPolicy = AcceptPolicy()


_DEFAULT_LINK = LinkSection()  # frozen: one shared instance for every partner the YAML does not name


class MetricsSection(Strict):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid listen address {value!r} (HOST:PORT)")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LogSection(Strict):
    retention: Duration = timedelta(days=365)
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"

    @field_validator("retention")
    @classmethod
    def _at_least_a_day(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s (the default keeps 365 days)")
        return value


class TransportSection(Strict):
    """Not pinned by the contract: tuning with safe defaults (docs/operations.md)."""

    heartbeat: Duration = timedelta(seconds=30)
    connect_timeout: Duration = timedelta(seconds=10)
    # Bounded by what a receiver accepts and a broker carries (federationd/bounds.py, docs/reliability.md).
    batch_records: int = Field(default=1000, ge=1, le=bounds.MAX_CHANGES)
    batch_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=bounds.MAX_BATCH_BYTES)
    send_workers: int = Field(default=4, ge=1, le=64)
    retry_max: Duration = timedelta(minutes=5)
    relink_interval: Duration = timedelta(hours=1)  # at most one snapshot per partner's relink request this often

    @model_validator(mode="after")
    def _positive(self) -> TransportSection:
        for name in ("heartbeat", "connect_timeout", "retry_max", "relink_interval"):
            if getattr(self, name) < timedelta(seconds=1):
                raise ValueError(f"{name} must be at least 1s")
        return self


class Config(Strict):
    site: SiteSection
    state_dir: Path
    database: DatabaseSection
    broker: BrokerSection
    tls: TlsSection = TlsSection()
    schedule: ScheduleSection = ScheduleSection()
    paused: bool = False
    links: dict[SiteId, LinkSection] = {}
    metrics: MetricsSection = MetricsSection()
    log: LogSection = LogSection()
    transport: TransportSection = TransportSection()
    limits: LimitsSection = LimitsSection()

    @field_validator("state_dir", mode="before")
    @classmethod
    def _absolute(cls, value: object) -> object:
        if not str(value or "").startswith("/"):
            raise ValueError("must be an absolute path (e.g. /var/lib/federationd)")
        return value

    @model_validator(mode="after")
    def _not_self(self) -> Config:
        if self.site.id in self.links:
            raise ValueError(f"links: {self.site.id!r} is this site itself")
        return self

    def link(self, partner: str) -> LinkSection:
        return self.links.get(partner, _DEFAULT_LINK)


def redact_credentials(text: str) -> str:
    """Replace the password of every `scheme://user:password@` in `text` with ***."""
    return _CREDENTIALS_IN_URL.sub(r"\1:***@", text)


def config_path(explicit: str | os.PathLike[str] | None) -> Path:
    """`-c FILE`, else `$FEDERATIOND_CONFIG`, else /etc/federationd/federationd.yaml."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG_PATH


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error naming both lines: YAML itself
    lets the later one win silently (`paused: true` above a later `paused: false` would mean false)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: dict[object, int] = {}
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base constructor names it
                break
            if first is not None:
                raise ConfigError(f"duplicate key {key!r} at line {line} (first given at line {first}): "
                                  "remove one of them")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    """The config model that holds the keys at `loc` (e.g. ("links", "site-b") -> LinkSection)."""
    model: object = Config
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model = field.annotation
        else:
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[-1] if args else None  # dict[K, V] -> V, list[V] -> V, X | None -> X
            if isinstance(part, str) and typing.get_origin(model) is None and not isinstance(model, type):
                return None
        while typing.get_origin(model) in (typing.Union, types.UnionType):
            model = next(a for a in typing.get_args(model) if a is not type(None))
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _suggestion(loc: tuple[int | str, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}{_suggestion(tuple(error['loc']))}"
    if error["type"] == "missing":
        return f"missing key {where!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}"


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate one site's YAML; raise ConfigError naming the file and the first offending key."""
    file = config_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{file}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{file}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: expected a mapping of keys at the top level")
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(e) for e in exc.errors(include_input=False))
        raise ConfigError(f"{file}: {redact_credentials(problems)}") from None
    try:
        credentials.check_trusted(file, "config file")
        if config.tls.key_file is not None:
            credentials.check_trusted(config.tls.key_file, "tls.key_file")
        return _with_secrets(config)
    except ConfigError as exc:
        raise ConfigError(f"{file}: {redact_credentials(str(exc))}") from None


def _with_secrets(config: Config) -> Config:
    """The config with every password a URL left out filled in from its file or systemd credential."""
    broker, database = config.broker, config.database
    url = broker.url
    if not credentials.has_password(broker.urls[0]):
        password = credentials.read_secret("broker", broker.password_file, "broker.password_file")
        if password is None:
            raise ConfigError("broker.url has no password, and neither broker.password_file nor "
                              f"${credentials.CREDENTIALS_ENV}/broker gives one")
        filled = [credentials.with_password(node, password) for node in broker.urls]
        url = filled[0] if len(filled) == 1 else filled
    management = broker.management_url
    if credentials.has_user(management) and not credentials.has_password(management):
        password = credentials.read_secret("management", broker.management_password_file,
                                           "broker.management_password_file")
        if password is None:
            raise ConfigError("broker.management_url names a user but no password, and neither "
                              f"broker.management_password_file nor ${credentials.CREDENTIALS_ENV}/management "
                              "gives one")
        management = credentials.with_password(management, password)
    elif broker.management_password_file is not None and not credentials.has_user(management):
        raise ConfigError("broker.management_password_file needs the user in broker.management_url "
                          "(https://USER@HOST:15671)")
    database_url = database.url
    if database_url.startswith("postgresql") and not credentials.has_password(database_url):
        password = credentials.read_secret("database", database.password_file, "database.password_file")
        if password is not None:  # else no password: peer or trust authentication, or ~/.pgpass
            database_url = credentials.with_password(database_url, password)
    return config.model_copy(update={
        "broker": broker.model_copy(update={"url": url, "management_url": management}),
        "database": database.model_copy(update={"url": database_url})})


def unknown_partners(config: Config, known: set[str]) -> list[str]:
    """A warning for each `links:` section naming a site this database has no link with (a misspelt partner
    would otherwise pause nothing, and nobody would be told)."""
    warnings = []
    for site in sorted(set(config.links) - known):
        close = difflib.get_close_matches(site, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        warnings.append(f"links: {site!r} names no known partner{hint}; its settings apply to nothing until a "
                        "link with it exists")
    return warnings


def permission_problem(file: Path) -> str | None:
    """A warning if the config file (which holds the broker password) is readable by other users."""
    try:
        mode = file.stat().st_mode
    except OSError:
        return None
    if mode & stat.S_IROTH:
        return f"{file} is readable by other users, and it holds the broker password: chmod 640 or 600 it"
    return None
