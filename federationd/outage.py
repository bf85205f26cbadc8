"""Logging an outage (our database, our own broker) without flooding the log: when it starts, at most once a
minute while it lasts, and when it ends, with how long it lasted."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

REMIND_SECONDS = 60.0


class Outage:
    """One thing that can be down (`what`, e.g. "our database"), reported through `log`. Thread-safe."""

    def __init__(self, log: logging.Logger, what: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self.what = what
        self._clock = clock
        self._lock = threading.Lock()
        self._since: float | None = None
        self._reminded = 0.0

    @property
    def ongoing(self) -> bool:
        return self._since is not None

    def failed(self, reason: object) -> None:
        """Something failed because `what` is down: logged at once the first time, then once a minute."""
        now = self._clock()
        line = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
        with self._lock:
            if self._since is None:
                self._since, self._reminded = now, now
                self._log.error("%s is unavailable: %s", self.what, line)
            elif now - self._reminded >= REMIND_SECONDS:
                self._reminded = now
                self._log.error("%s still unavailable after %.0fs: %s", self.what, now - self._since, line)

    def recovered(self) -> None:
        """`what` answered again: logged once, if it was down."""
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            self._log.warning("%s is back after %.0fs", self.what, self._clock() - since)
