"""A broker cluster: `broker.url` and `broker.public_url` as lists of nodes, validated; a partner's list on arrival;
the connection parameters, one per node, each checking its own host name."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from federationd import arrival
from federationd.broker import connection
from federationd.broker.connection import parameters
from federationd.broker.endpoints import Endpoints
from federationd.broker.tls import client_context
from federationd.config import MAX_BROKER_NODES, TlsSection, load_config
from federationd.errors import ConfigError

PASSWORD = "SECRET"


def node(host: str, *, user: str | None = "federationd", password: str | None = PASSWORD,
         vhost: str = "federation", port: int = 5671) -> str:
    userinfo = "" if user is None else f"{user}:{password}@" if password else f"{user}@"
    return f"amqps://{userinfo}{host}:{port}/{vhost}"


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    def writer(url: Any, public_url: Any, **broker: Any) -> Path:
        config = {
            "site": {"id": "site-a", "company": "A Co.", "name": "A HQ"},
            "state_dir": "/var/lib/federationd",
            "database": {"url": f"sqlite:///{tmp_path / 'site.db'}"},
            "broker": {"url": url, "management_url": "https://mq1.a.example:15671", "public_url": public_url,
                       **broker},
        }
        path = tmp_path / "federationd.yaml"
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)
        return path
    return writer


def refused(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert PASSWORD not in message
    return message


PUBLIC = [node(h, user=None) for h in ("mq1.a.example", "mq2.a.example", "mq3.a.example")]
OWN = [node(h) for h in ("mq1.a.example", "mq2.a.example", "mq3.a.example")]


def test_lists_of_nodes_load(write: Callable[..., Path]) -> None:
    config = load_config(write(OWN, PUBLIC, quorum_group_size=3))
    assert config.broker.urls == tuple(OWN)
    assert config.broker.public_urls == tuple(PUBLIC)
    assert config.broker.quorum_group_size == 3


def test_one_url_stays_a_string_and_a_list_of_one_is_that_url(write: Callable[..., Path]) -> None:
    config = load_config(write([OWN[0]], PUBLIC[0]))
    assert config.broker.url == OWN[0]
    assert config.broker.public_url == PUBLIC[0]
    assert config.broker.quorum_group_size is None  # the broker's default: every cluster node


def test_a_password_left_out_fills_every_node(write: Callable[..., Path], tmp_path: Path) -> None:
    secret = tmp_path / "broker.secret"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    urls = [node(h, password=None) for h in ("mq1.a.example", "mq2.a.example")]
    config = load_config(write(urls, PUBLIC[:2], password_file=str(secret)))
    assert [Endpoints.parse(config.broker.url).nodes[i].password for i in (0, 1)] == ["s3cret", "s3cret"]


@pytest.mark.parametrize(("url", "public_url", "says"), [
    ([OWN[0], node("mq2.a.example", vhost="other")], PUBLIC, "broker.url: every node of one cluster has the same "
                                                             "vhost: node 2 differs from node 1"),
    ([OWN[0], node("mq2.a.example", user="someone")], PUBLIC, "same user: node 2 differs"),
    ([OWN[0], node("mq2.a.example", password="other")], PUBLIC, "same password, or none"),
    ([OWN[0], node("mq2.a.example").replace("amqps", "amqp")], PUBLIC, "broker.url: node 2 of 2 must be an amqps"),
    ([OWN[0], OWN[0]], PUBLIC, "node mq1.a.example:5671 is listed twice"),
    ([], PUBLIC, "broker.url: an empty list"),
    ([node(f"mq{i}.a.example") for i in range(MAX_BROKER_NODES + 1)], PUBLIC, f"at most {MAX_BROKER_NODES}"),
    (OWN, [PUBLIC[0], node("mq2.a.example")], "broker.public_url: node 2 of 2 must not carry credentials"),
    (OWN, [PUBLIC[0], node("mq2.a.example", user=None, vhost="b")], "public_url: every node of one cluster has "
                                                                    "the same vhost"),
    (OWN, [PUBLIC[0], 5671], "every node is an amqps:// URL"),
], ids=["vhost", "user", "password", "scheme", "twice", "empty", "too-many", "public-credentials",
        "public-vhost", "not-text"])
def test_a_bad_list_is_refused_naming_the_key_and_the_node(write: Callable[..., Path], url: Any, public_url: Any,
                                                           says: str) -> None:
    assert says in refused(write(url, public_url))


@pytest.mark.parametrize("size", [0, MAX_BROKER_NODES + 1])
def test_quorum_group_size_is_bounded(write: Callable[..., Path], size: int) -> None:
    assert "broker.quorum_group_size" in refused(write(OWN, PUBLIC, quorum_group_size=size))


# -- a partner's list, on arrival and on the wire ------------------------------------------------------------------

def test_one_url_arrives_and_is_stored_as_the_plain_url() -> None:
    assert arrival.public_url("amqps://mq.b.example/federation") == "amqps://mq.b.example:5671/federation"


def test_a_list_arrives_validated_entry_by_entry_and_is_stored_as_json() -> None:
    stored = arrival.public_url(["amqps://mq1.b.example/v", "amqps://mq2.b.example:5672/v"])
    assert json.loads(stored) == ["amqps://mq1.b.example:5671/v", "amqps://mq2.b.example:5672/v"]
    endpoints = Endpoints.parse(stored)
    assert [n.host for n in endpoints.nodes] == ["mq1.b.example", "mq2.b.example"]
    assert endpoints.wire() == json.loads(stored)
    assert Endpoints.parse("amqps://mq.b.example:5671/v").wire() == "amqps://mq.b.example:5671/v"


@pytest.mark.parametrize(("value", "says"), [
    (["amqps://mq1.b.example/v", "amqps://u:p@mq2.b.example/v"], "node 2 of 2"),
    (["amqps://mq1.b.example/v", "amqps://mq2.b.example/w"], "same vhost"),
    ([], "an empty list"),
    ([f"amqps://mq{i}.b.example/v" for i in range(MAX_BROKER_NODES + 1)], f"at most {MAX_BROKER_NODES}"),
    ([f"amqps://{'m' * 60}{i}.b.example/v" for i in range(MAX_BROKER_NODES)], f"{arrival.MAX_URL} characters"),
    (["amqps://mq1.b.example/v", 7], "amqps:// URL"),
])
def test_a_bad_list_from_a_partner_is_refused(value: object, says: str) -> None:
    with pytest.raises(ValueError, match="invalid public URL") as caught:
        arrival.public_url(value)
    assert says in str(caught.value)


def _parameters(endpoints: Endpoints) -> list[Any]:
    return parameters(endpoints, client_context(TlsSection()), heartbeat=timedelta(seconds=30),
                      timeout=timedelta(seconds=5), name="test")


def test_every_node_gets_its_own_host_name_check() -> None:
    endpoints = Endpoints.parse(json.dumps(["amqps://mq1.b.example/v", "amqps://mq2.b.example:5700/v"]))
    params = _parameters(endpoints.with_credentials("fed.b.a", "pw"))
    assert [(p.host, p.port, p.ssl_options.server_hostname) for p in params] == [
        ("mq1.b.example", 5671, "mq1.b.example"), ("mq2.b.example", 5700, "mq2.b.example")]
    assert {p.credentials.username for p in params} == {"fed.b.a"}
    assert {p.virtual_host for p in params} == {"v"}


def test_the_node_that_answered_last_is_tried_first(monkeypatch: pytest.MonkeyPatch) -> None:
    endpoints = Endpoints.parse(["amqps://mq1.c.example/v", "amqps://mq2.c.example/v", "amqps://mq3.c.example/v"])
    monkeypatch.setattr(connection, "_last_good", {})
    assert [p.host for p in _parameters(endpoints)] == ["mq1.c.example", "mq2.c.example", "mq3.c.example"]
    connection._last_good[connection._key(endpoints)] = 2
    assert [p.host for p in _parameters(endpoints)] == ["mq3.c.example", "mq1.c.example", "mq2.c.example"]
    assert {p.connection_attempts for p in _parameters(endpoints)} == {connection.CLUSTER_ROUNDS}
    one = _parameters(Endpoints.parse("amqps://mq.c.example/v"))
    assert [(p.host, p.connection_attempts) for p in one] == [("mq.c.example", 1)]  # one node: as before
