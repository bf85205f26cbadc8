"""Least privilege and secrets out of the YAML, end to end on a real TLS broker.

Site A runs with a tagless broker user limited to `federation` names of its vhost, provisions partners with a
separate management user, and keeps every password out of its config file: the broker's in
$CREDENTIALS_DIRECTORY/broker, the management one in broker.management_password_file. It links and replicates
with B. Then A's database, copied without its state_dir, holds no usable partner credential.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, select, text

from federationd import links as link_rows
from federationd.config import load_config
from federationd.runtime import Runtime
from federationd.schema import links
from tests.support.sites import link
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def _least_privilege(site, broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own, admin = broker.add_least_privilege_users(site.id)
    broker.api("DELETE", f"/api/users/admin-{site.id}")  # the harness's all-powerful user is gone
    secrets_dir = tmp_path / f"{site.id}-credentials"
    secrets_dir.mkdir(mode=0o700)
    (secrets_dir / "broker").write_text(own.password + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(secrets_dir))  # as systemd's LoadCredential= sets it
    password_file = tmp_path / f"{site.id}-management.pw"
    password_file.write_text(admin.password + "\n")
    password_file.chmod(0o600)
    url = urlsplit(site.cfg["broker"]["url"])
    management = urlsplit(site.cfg["broker"]["management_url"])
    site.cfg["broker"].update({
        "url": url._replace(netloc=f"{own.user}@{url.hostname}:{url.port}").geturl(),
        "management_url": management._replace(netloc=f"{admin.user}@{management.netloc}").geturl(),
        "management_password_file": str(password_file)})
    site.write_config()
    assert own.password not in site.config_path.read_text() and admin.password not in site.config_path.read_text()


def test_tagless_daemon_user_links_and_replicates(make_site, broker, tmp_path, monkeypatch):
    a = make_site("lp", start=False)
    _least_privilege(a, broker, tmp_path, monkeypatch)
    a.start()
    b = make_site("peer")
    assert broker.api("GET", f"/api/users/fed-{a.id}")["tags"] in ([], "")
    link(a, b)
    a.put("employee", "e1", {"name": "Least Privilege"})
    b.put("department", "d1", {"name": "Sales"})
    a.cli("send-now")
    b.cli("send-now")
    wait_until(lambda: len(b.records("employee", origin=a.id)) == 1, 60, what="A's employee at B")
    wait_until(lambda: len(a.records("department", origin=b.id)) == 1, 60, what="B's department at A")
    assert f"fed.{a.id}.{b.id}" in {u["name"] for u in broker.api("GET", "/api/users")}, "provisioned by mgmt user"

    # A's database copied without its state_dir: the partner credential is sealed and useless there
    a.stop()
    with a.engine() as engine, engine.connect() as conn:
        clear = link_rows.get(conn, b.id).remote_password
        stored = conn.execute(select(links.c.remote_password).where(links.c.site == b.id)).scalar_one()
    assert clear and clear not in stored and stored.startswith("sealed1:")
    if a.backend == "sqlite":
        raw = b"".join(p.read_bytes() for p in a.dir.glob("site.db*"))
        assert clear.encode() not in raw
    copy = tmp_path / "copy"
    config = load_config(a.config_path)
    if a.backend == "sqlite":
        copy.mkdir()
        for p in a.dir.glob("site.db*"):
            shutil.copy2(p, copy / p.name)
        url = f"sqlite:///{copy / 'site.db'}"
    else:
        url = config.database.url
    elsewhere = config.model_copy(update={"state_dir": tmp_path / "fresh-state",
                                          "database": config.database.model_copy(update={"url": url})})
    rt = Runtime(elsewhere)
    try:
        with rt.engine.connect() as conn:
            assert link_rows.get(conn, b.id).remote_password is None
    finally:
        rt.dispose()
    plain = create_engine(url)
    try:
        with plain.connect() as conn:
            dumped = " ".join(str(v) for row in conn.execute(text("SELECT * FROM links")) for v in row)
        assert clear not in dumped
    finally:
        plain.dispose()
