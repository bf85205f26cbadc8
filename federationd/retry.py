"""Every retry policy in one place: tenacity, capped exponential backoff with jitter, a logged reason."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_never,
    wait_random_exponential,
)

from federationd.errors import StoreError, TransportError

log = logging.getLogger(__name__)


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, state.attempt_number, error, wait)
    return before_sleep


def transport_retry(what: str, *, max_wait_seconds: float = 60.0, attempts: int | None = None,
                    stop_when: Callable[[RetryCallState], bool] | None = None,
                    sleep: Callable[[float], Any] | None = None) -> Retrying:
    """Retry a broker operation on TransportError: 1 s doubling up to `max_wait_seconds`, full jitter.
    `sleep` lets a caller wake early on shutdown (pass `stop_event.wait`)."""
    stop: Any = stop_after_attempt(attempts) if attempts else stop_never
    if stop_when is not None:
        stop = stop | stop_when
    return Retrying(retry=retry_if_exception_type(TransportError),
                    wait=wait_random_exponential(multiplier=1, max=max_wait_seconds),
                    stop=stop, before_sleep=_log_retry(what), reraise=True, sleep=sleep or time.sleep)


def store_retry(what: str, *, attempts: int = 5) -> Retrying:
    """Retry a database operation that failed on a transient error (lock timeout, lost connection)."""
    return Retrying(retry=retry_if_exception_type(StoreError),
                    wait=wait_random_exponential(multiplier=0.2, max=5),
                    stop=stop_after_attempt(attempts), before_sleep=_log_retry(what), reraise=True)


# Backoff for sends to a partner that failed: scheduled by the send loop (no thread sleeps on a partner).
SEND_BACKOFF = wait_random_exponential(multiplier=2, max=300)


def send_backoff_seconds(failures: int, cap_seconds: float | None = None) -> float:
    """How long to wait before the next send to a partner after `failures` consecutive failures (jittered)."""
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, failures)
    delay = float(SEND_BACKOFF(state))
    return min(delay, cap_seconds) if cap_seconds is not None else delay


# Backoff of the consumer after a failure of its own (our broker lost, our database down, any exception): short
# at first so that a blip costs seconds, capped so that a long outage costs a wake-up every half minute.
CONSUMER_BACKOFF = wait_random_exponential(multiplier=0.5, max=30)


def consumer_backoff_seconds(failures: int) -> float:
    """How long the consumer waits before its next attempt after `failures` consecutive failures (jittered)."""
    state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, failures)
    return float(CONSUMER_BACKOFF(state))


def database_wait(what: str, *, stop_when: Callable[[RetryCallState], bool],
                  sleep: Callable[[float], Any]) -> Retrying:
    """Wait until our own database answers again: retry the probe on any database error, 0.5 s doubling up to
    30 s, until it answers or `stop_when` says to give up (shutdown)."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - base modules keep their imports light

    return Retrying(retry=retry_if_exception_type((StoreError, SQLAlchemyError, OSError)), wait=CONSUMER_BACKOFF,
                    stop=stop_when, before_sleep=_quiet_retry(what), reraise=True, sleep=sleep)


def _quiet_retry(what: str) -> Callable[[RetryCallState], None]:
    """Log retries at debug: the caller's Outage reports the outage itself (start, once a minute, end)."""
    def before_sleep(state: RetryCallState) -> None:
        wait = state.next_action.sleep if state.next_action else 0.0
        log.debug("%s: attempt %d failed; retrying in %.1fs", what, state.attempt_number, wait)
    return before_sleep
