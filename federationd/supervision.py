"""Supervision: the consumer thread's life (started when this daemon becomes active, stopped when it stops
being active), the health the watchdog and `/healthz` report, and the heartbeat file `federationd health` reads.

`WATCHDOG=1` goes to systemd only while the main loop went round recently and, on the active daemon, the consumer
thread is alive and beating (it beats while connected, while reconnecting and while waiting for our database:
an outage is not a wedge; a thread that died or hangs is).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from federationd import health
from federationd.broker.consumer import Consumer

log = logging.getLogger(__name__)

CONSUMER_STALE_SECONDS = 45.0  # longer than the consumer's longest wait between beats (a drain, a connect)
MAIN_STALE_SECONDS = 30.0
HEARTBEAT_SECONDS = 2.0


def healthy(main_age: float, consumer_age: float | None, active: bool) -> bool:
    """The watchdog's rule: the main loop is fresh, and an active daemon's consumer thread is alive and fresh."""
    if main_age > MAIN_STALE_SECONDS:
        return False
    if not active:
        return True
    return consumer_age is not None and consumer_age <= CONSUMER_STALE_SECONDS


class ConsumerThread:
    """The consumer on a thread of its own, with a stop event of its own (fencing stops it, not the daemon)."""

    def __init__(self, make: Callable[[threading.Event], Consumer]) -> None:
        self._make = make
        self._consumer: Consumer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        self._stop = threading.Event()
        self._consumer = self._make(self._stop)
        self._thread = threading.Thread(target=self._consumer.run, name="consumer", daemon=True)
        self._thread.start()

    def halt(self) -> None:
        """Tell the consumer to stop now, from any thread, without waiting (fencing); `stop` joins it."""
        self._stop.set()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("the consumer did not stop within %.0fs", timeout)
        self._thread = self._consumer = None

    @property
    def consuming(self) -> bool:
        return self._consumer is not None and self._consumer.connected.is_set()

    def age(self) -> float | None:
        """Seconds since the consumer thread last beat; None if it is not running (or died)."""
        if self._consumer is None or self._thread is None or not self._thread.is_alive():
            return None
        return time.monotonic() - self._consumer.beat_at


class Heartbeat:
    """This process's heartbeat file in `state_dir` (for `federationd health`), written every few seconds."""

    def __init__(self, state_dir: Path) -> None:
        self._state_dir = state_dir
        self._pid = os.getpid()
        self._next = 0.0

    def beat(self, *, active: bool, consuming: bool, database: bool) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + HEARTBEAT_SECONDS
        try:
            health.write(self._state_dir, health.Beat(self._pid, "active" if active else "standby", consuming,
                                                      database, time.time()))
        except OSError as exc:
            log.warning("could not write the heartbeat file in %s: %s", self._state_dir, exc)

    def remove(self) -> None:
        health.remove(self._state_dir, self._pid)
