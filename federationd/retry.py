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
