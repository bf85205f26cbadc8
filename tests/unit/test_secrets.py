"""Secrets out of the YAML: passwords from files and $CREDENTIALS_DIRECTORY, and the checks on those files."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine

from federationd import sealing
from federationd.broker.endpoints import Endpoint
from federationd.config import load_config
from federationd.errors import ConfigError

NOBODY = 65534
BASE = """\
site: {{id: site-a, company: "Example Co., Ltd.", name: "Example HQ"}}
state_dir: /var/lib/federationd
database: {{url: "{database}"{database_extra}}}
broker:
  url: "{url}"
  management_url: "{management}"
  public_url: "amqps://mq.site-a.example:5671/federation"
{broker_extra}"""


def write(tmp_path: Path, url: str = "amqps://federationd@mq.site-a.example:5671/federation",
          management: str = "https://mq.site-a.example:15671", database: str = "sqlite:////tmp/x.db",
          broker_extra: str = "", database_extra: str = "") -> Path:
    path = tmp_path / "federationd.yaml"
    path.write_text(BASE.format(url=url, management=management, database=database, broker_extra=broker_extra,
                                database_extra=database_extra))
    path.chmod(0o640)
    return path


def secret(tmp_path: Path, name: str, value: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def _no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)


def test_broker_password_from_password_file(tmp_path: Path) -> None:
    odd = "p@ss:w/rd%20 é"
    pw = secret(tmp_path, "broker.pw", odd)
    config = load_config(write(tmp_path, broker_extra=f"  password_file: {pw}\n"))
    endpoint = Endpoint.parse(config.broker.url)
    assert (endpoint.user, endpoint.password, endpoint.host, endpoint.vhost) == (
        "federationd", odd, "mq.site-a.example", "federation")


def test_passwords_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in ("broker", "management", "database"):
        (creds / name).write_text(f"{name}-secret\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = load_config(write(tmp_path, management="https://provisioner@mq.site-a.example:15671",
                               database="postgresql+psycopg://federationd@db.example/federationd"))
    assert Endpoint.parse(config.broker.url).password == "broker-secret"
    assert unquote(urlsplit(config.broker.management_url).password or "") == "management-secret"
    assert urlsplit(config.database.url).password == "database-secret"


def test_password_file_wins_over_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "broker").write_text("from-systemd")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    pw = secret(tmp_path, "broker.pw", "from-file")
    config = load_config(write(tmp_path, broker_extra=f"  password_file: {pw}\n"))
    assert Endpoint.parse(config.broker.url).password == "from-file"


def test_missing_broker_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"broker\.url has no password"):
        load_config(write(tmp_path))


def test_management_user_without_password_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="management_url names a user but no password"):
        load_config(write(tmp_path, url="amqps://u:p@mq.site-a.example:5671/federation",
                          management="https://provisioner@mq.site-a.example:15671"))


def test_management_falls_back_to_url_credentials(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, url="amqps://u:p@mq.site-a.example:5671/federation"))
    assert config.broker.management_url == "https://mq.site-a.example:15671"


def test_database_without_password_stays_as_is(tmp_path: Path) -> None:
    url = "postgresql+psycopg://federationd@/federationd?host=/run/postgresql"
    config = load_config(write(tmp_path, url="amqps://u:p@mq.site-a.example:5671/federation", database=url))
    assert config.database.url == url


def test_database_password_file(tmp_path: Path) -> None:
    pw = secret(tmp_path, "db.pw", "s3cr3t/+")
    config = load_config(write(tmp_path, url="amqps://u:p@mq.site-a.example:5671/federation",
                               database="postgresql+psycopg://federationd@db.example:5432/federationd",
                               database_extra=f", password_file: {pw}"))
    assert unquote(urlsplit(config.database.url).password or "") == "s3cr3t/+"


@pytest.mark.parametrize(("mode", "owner", "refused"), [
    (0o640, None, None), (0o600, None, None), (0o660, None, "writable by other users"),
    (0o646, None, "writable by other users"), (0o640, NOBODY, "owned by uid 65534")])
def test_config_file_owner_and_write_bits(tmp_path: Path, mode: int, owner: int | None, refused: str | None) -> None:
    path = write(tmp_path, url="amqps://u:p@mq.site-a.example:5671/federation")
    path.chmod(mode)
    if owner is not None:
        if os.geteuid() != 0:
            pytest.skip("changing a file's owner needs root")
        os.chown(path, owner, -1)
    if refused is None:
        load_config(path)
    else:
        with pytest.raises(ConfigError, match=refused):
            load_config(path)


@pytest.mark.parametrize(("mode", "refused"), [(0o644, "readable by other users"),
                                               (0o620, "writable by other users")])
def test_password_file_modes(tmp_path: Path, mode: int, refused: str) -> None:
    pw = secret(tmp_path, "broker.pw", "x", mode=mode)
    with pytest.raises(ConfigError, match=refused) as caught:
        load_config(write(tmp_path, broker_extra=f"  password_file: {pw}\n"))
    assert "x\n" not in str(caught.value)


def test_key_file_write_bits(tmp_path: Path) -> None:
    cert, key = secret(tmp_path, "c.pem", "cert", 0o644), secret(tmp_path, "k.pem", "key", 0o666)
    path = write(tmp_path, url="amqps://u:p@mq.site-a.example:5671/federation")
    path.write_text(path.read_text() + f"tls: {{cert_file: {cert}, key_file: {key}}}\n")
    with pytest.raises(ConfigError, match=r"tls\.key_file .* writable by other users"):
        load_config(path)


def test_sealing_needs_the_state_dir_key(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    copy = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    (tmp_path / "state").mkdir()
    key = sealing.load_key(tmp_path / "state", create=True)
    assert (tmp_path / "state" / "sealing.key").stat().st_mode & 0o777 == 0o600
    sealing.attach(engine, key)
    sealing.attach(copy, Fernet(Fernet.generate_key()))  # another installation's state_dir
    with engine.connect() as conn:
        sealed = sealing.seal(conn, "partner-password")
        assert sealed and "partner-password" not in sealed
        assert sealing.open_sealed(conn, sealed, "site-b") == "partner-password"
    with copy.connect() as conn:
        assert sealing.open_sealed(conn, sealed, "site-b") is None
    engine.dispose()
    copy.dispose()
