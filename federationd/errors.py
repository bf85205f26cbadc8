"""The small error tree every caller catches instead of library exceptions.

Callers never import pika, SQLAlchemy or pydantic to catch: the edges translate their exceptions into these.
"""

from __future__ import annotations


class FederationError(Exception):
    """Base of every error federationd raises on purpose; its message is one line an operator can act on."""


class ConfigError(FederationError):
    """The config file is missing, unreadable or invalid (the message names the file and the key)."""


class StoreError(FederationError):
    """The database is unreachable, not initialised, or refused an operation."""


class LinkError(FederationError):
    """A link operation is impossible: unknown partner, wrong state, bad/expired/used token, ..."""


class TransportError(FederationError):
    """A broker could not be reached or refused us; the message names the partner (or our own broker)."""

    def __init__(self, message: str, *, site: str | None = None) -> None:
        super().__init__(message)
        self.site = site


class CredentialsRefused(TransportError):
    """A broker refused the user name or password we presented (revoked, used or wrong)."""


class CredentialsRevoked(TransportError):
    """The broker closed our connection because the user we connected as was deleted meanwhile (after a publish
    that may already have been taken: the one-time token user is deleted by the requester once it has read an
    acceptance)."""


class RejectedChange(FederationError):
    """A change or a message was refused; `reason` is machine-readable (it labels the rejection metric)."""

    def __init__(self, reason: str, message: str, *, record_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.record_id = record_id  # which record of a batch was refused, when there is one


class AccessDenied(FederationError):
    """An access check or a sign-in ticket was refused; the message says why."""


class Fenced(FederationError):
    """This daemon is not (or no longer) the site's active daemon: it must not send or consume."""


class SendCancelled(FederationError):
    """The operator cleared a send in flight (`federationd clear`): abandoned, what was not confirmed stays
    pending; not the partner's failure."""
