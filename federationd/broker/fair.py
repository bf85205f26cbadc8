"""The hand-off between the consumer's I/O thread and its apply worker: one FIFO per partner, served in turn.

A partner's deliveries keep their order (one FIFO each, one worker); partners take turns, so a partner with many
prefetched messages, or one slow message, delays another partner's next message by at most one message.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Thread-safe: `put` from the I/O thread, `take` from the worker."""

    def __init__(self) -> None:
        self._queues: OrderedDict[str, deque[T]] = OrderedDict()
        self._ready = threading.Condition()

    def put(self, key: str, item: T) -> None:
        with self._ready:
            self._queues.setdefault(key, deque()).append(item)
            self._ready.notify()

    def take(self, timeout: float) -> T | None:
        """The next item in turn: the head of the next partner's FIFO (round robin), or None after `timeout`."""
        with self._ready:
            if not self._queues and not self._ready.wait(timeout):
                return None
            if not self._queues:
                return None
            key, queue = next(iter(self._queues.items()))
            item = queue.popleft()
            del self._queues[key]
            if queue:  # this partner goes to the back of the line
                self._queues[key] = queue
            return item

    def clear(self) -> int:
        """Drop everything waiting (their messages go back to the broker with the channel); returns how many."""
        with self._ready:
            count = sum(len(queue) for queue in self._queues.values())
            self._queues.clear()
            return count

    def __len__(self) -> int:
        with self._ready:
            return sum(len(queue) for queue in self._queues.values())
