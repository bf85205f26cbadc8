"""Opening pika connections over TLS, and turning pika's many exceptions into one TransportError.

pika connections are not thread-safe: every thread opens its own and closes it; nothing here is shared.
"""

from __future__ import annotations

import logging
import ssl
from datetime import timedelta

import pika
import pika.exceptions
from pika.adapters.select_connection import SelectConnection

from federationd.broker.endpoints import Endpoint, Endpoints
from federationd.broker.tls import describe
from federationd.errors import CredentialsRefused, TransportError

log = logging.getLogger(__name__)


# Several nodes: pika tries each in turn, and goes round them this many times with this pause in between before
# the caller's own backoff (tenacity, or the consumer's) takes over. One node: one attempt, as the caller retries.
CLUSTER_ROUNDS = 2
CLUSTER_ROUND_PAUSE_SECONDS = 1.0

_last_good: dict[tuple[tuple[str, int], ...], int] = {}  # a cluster's (host, port)s -> the node that answered last


def _key(endpoints: Endpoints) -> tuple[tuple[str, int], ...]:
    return tuple((node.host, node.port) for node in endpoints.nodes)


def parameters(endpoints: Endpoints, context: ssl.SSLContext, *, heartbeat: timedelta,
               timeout: timedelta, name: str) -> list[pika.ConnectionParameters]:
    """One set of parameters per node, each checking that node's own host name; the node that answered last
    comes first (a node that is down is not tried first again and again)."""
    nodes = list(endpoints.nodes)
    first = _last_good.get(_key(endpoints), 0) % len(nodes)
    several = len(nodes) > 1
    return [pika.ConnectionParameters(
        host=node.host,
        port=node.port,
        virtual_host=node.vhost,
        credentials=pika.PlainCredentials(node.user, node.password, erase_on_connect=False),
        ssl_options=pika.SSLOptions(context, server_hostname=node.host),
        heartbeat=int(heartbeat.total_seconds()),
        blocked_connection_timeout=max(60.0, 2 * heartbeat.total_seconds()),
        socket_timeout=timeout.total_seconds(),
        stack_timeout=timeout.total_seconds() * 2,
        connection_attempts=CLUSTER_ROUNDS if several else 1,
        retry_delay=CLUSTER_ROUND_PAUSE_SECONDS if several else 2.0,
        client_properties={"connection_name": name, "product": "federationd"},
    ) for node in nodes[first:] + nodes[:first]]


def connect(endpoints: Endpoints, context: ssl.SSLContext, *, heartbeat: timedelta, timeout: timedelta,
            name: str, site: str, impl_class: type[SelectConnection] | None = None) -> pika.BlockingConnection:
    """Open one TLS connection to the first node that answers; on failure raise TransportError naming `site`
    and what went wrong (with several nodes: at the last one tried). `impl_class`: a cancellable connect
    (federationd/broker/cancel.py)."""
    try:
        connection = pika.BlockingConnection(parameters(endpoints, context, heartbeat=heartbeat, timeout=timeout,
                                                        name=name), _impl_class=impl_class)
    except pika.exceptions.ProbableAuthenticationError:
        raise CredentialsRefused(f"{site}: broker {endpoints} refused the credentials of {endpoints.user!r}",
                                 site=site) from None
    except pika.exceptions.ProbableAccessDeniedError:
        raise TransportError(f"{site}: broker {endpoints} denied {endpoints.user!r} access to vhost "
                             f"{endpoints.vhost!r}", site=site) from None
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise transport_error(exc, site, endpoints) from None
    if len(endpoints.nodes) > 1:
        key, node = _key(endpoints), connected_node(connection)
        if node in key:
            if _last_good.get(key, 0) != key.index(node):
                log.info("%s: connected to broker node %s:%d", site, *node)
            _last_good[key] = key.index(node)
    return connection


def connected_node(connection: pika.BlockingConnection) -> tuple[str, int] | None:
    """(host, port) of the node `connection` reached."""
    params = getattr(getattr(connection, "_impl", None), "params", None)  # pika keeps the winning parameters here
    return (params.host, params.port) if params is not None else None


def transport_error(exc: BaseException, site: str, endpoint: Endpoint | Endpoints) -> TransportError:
    problem = describe(exc) or _plain(exc)
    return TransportError(f"{site}: cannot reach broker {endpoint}: {problem}", site=site)


def _plain(exc: BaseException) -> str:
    wrapped = getattr(exc, "exception", None)  # pika's connector errors keep the socket error here
    if isinstance(wrapped, BaseException):
        return _plain(wrapped)
    for arg in exc.args:
        if isinstance(arg, BaseException):
            return _plain(arg)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
