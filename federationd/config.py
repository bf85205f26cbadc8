"""The typed, validated site configuration (SPEC section 8) and where it is read from.

Unknown keys and impossible values are refused with a `ConfigError` naming the file and the key. Secrets (the
password in `broker.url`) are never echoed in an error.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails

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

    @field_validator("url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if not (value.startswith("sqlite:///") or value.startswith("postgresql")):
            raise ValueError("database.url must be sqlite:///PATH or postgresql+psycopg://...")
        if value.rstrip("/") in ("sqlite:", "sqlite://") or value.startswith("sqlite:///:memory:"):
            raise ValueError("database.url needs a file: sqlite:///PATH (an in-memory database loses everything)")
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
    if credentials and not (parts.username and parts.password):
        raise ValueError("must carry the broker user and password (amqps://USER:PASSWORD@HOST:5671/VHOST)")
    if not credentials and (parts.username or parts.password):
        raise ValueError("must not carry credentials: partners get their own")
    if len(parts.path.lstrip("/")) == 0:
        raise ValueError("must name the vhost (amqps://HOST:5671/VHOST)")
    return value


class BrokerSection(Strict):
    url: str
    management_url: str
    public_url: str

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _amqps_endpoint(value, credentials=True)

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str) -> str:
        return _amqps_endpoint(value, credentials=False)

    @field_validator("management_url")
    @classmethod
    def _management(cls, value: str) -> str:
        if urlsplit(value).scheme != "https" or not urlsplit(value).hostname:
            raise ValueError("must be an https:// URL (the management API is used over TLS only)")
        return value.rstrip("/")


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

    @model_validator(mode="after")
    def _positive(self) -> ScheduleSection:
        for name in ("quiet_period", "max_delay", "busy_retry"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be longer than 0")
        if self.max_delay < self.quiet_period:
            raise ValueError("max_delay must not be shorter than quiet_period")
        return self


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

    @field_validator("retention")
    @classmethod
    def _at_least_a_day(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError("must be at least 1s (SPEC 6 keeps 365 days)")
        return value


class TransportSection(Strict):
    """Not pinned by SPEC: tuning with safe defaults (docs/operations.md)."""

    heartbeat: Duration = timedelta(seconds=30)
    connect_timeout: Duration = timedelta(seconds=10)
    batch_records: int = Field(default=1000, ge=1, le=100_000)
    batch_bytes: int = Field(default=4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    send_workers: int = Field(default=4, ge=1, le=64)
    retry_max: Duration = timedelta(minutes=5)

    @model_validator(mode="after")
    def _positive(self) -> TransportSection:
        for name in ("heartbeat", "connect_timeout", "retry_max"):
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


def _describe(error: ErrorDetails) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key {where!r}"
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
        raw = yaml.safe_load(text)
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
    return config


def permission_problem(file: Path) -> str | None:
    """A warning if the config file (which holds the broker password) is readable by other users."""
    try:
        mode = file.stat().st_mode
    except OSError:
        return None
    if mode & stat.S_IROTH:
        return f"{file} is readable by other users, and it holds the broker password: chmod 640 or 600 it"
    return None
