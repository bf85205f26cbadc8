"""Opening pika connections over TLS, and turning pika's many exceptions into one TransportError.

pika connections are not thread-safe: every thread opens its own and closes it; nothing here is shared.
"""

from __future__ import annotations

import ssl
from datetime import timedelta

import pika
import pika.exceptions

from federationd.broker.endpoints import Endpoint
from federationd.broker.tls import describe
from federationd.errors import CredentialsRefused, TransportError


def parameters(endpoint: Endpoint, context: ssl.SSLContext, *, heartbeat: timedelta,
               timeout: timedelta, name: str) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host=endpoint.host,
        port=endpoint.port,
        virtual_host=endpoint.vhost,
        credentials=pika.PlainCredentials(endpoint.user, endpoint.password, erase_on_connect=False),
        ssl_options=pika.SSLOptions(context, server_hostname=endpoint.host),
        heartbeat=int(heartbeat.total_seconds()),
        blocked_connection_timeout=max(60.0, 2 * heartbeat.total_seconds()),
        socket_timeout=timeout.total_seconds(),
        stack_timeout=timeout.total_seconds() * 2,
        connection_attempts=1,
        client_properties={"connection_name": name, "product": "federationd"},
    )


def connect(endpoint: Endpoint, context: ssl.SSLContext, *, heartbeat: timedelta, timeout: timedelta,
            name: str, site: str) -> pika.BlockingConnection:
    """Open one TLS connection; on failure raise TransportError naming `site` and what went wrong."""
    try:
        return pika.BlockingConnection(parameters(endpoint, context, heartbeat=heartbeat, timeout=timeout,
                                                  name=name))
    except pika.exceptions.ProbableAuthenticationError:
        raise CredentialsRefused(f"{site}: broker {endpoint} refused the credentials of {endpoint.user!r}",
                                 site=site) from None
    except pika.exceptions.ProbableAccessDeniedError:
        raise TransportError(f"{site}: broker {endpoint} denied {endpoint.user!r} access to vhost "
                             f"{endpoint.vhost!r}", site=site) from None
    except (pika.exceptions.AMQPError, OSError) as exc:
        raise transport_error(exc, site, endpoint) from None


def transport_error(exc: BaseException, site: str, endpoint: Endpoint) -> TransportError:
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
