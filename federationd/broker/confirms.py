"""Publisher confirms in flight: a bounded window of published messages, settled in publish order.

On a confirming channel the broker acks each message (possibly several at once, `multiple`), refuses one (nack),
or returns a `mandatory` message no queue took (a basic.return, before that message's ack). A message counts as
confirmed only once it and every message published before it were acked; only then does its `on_confirmed` run
(the sender marks its batch sent there). The first nack, return or lost channel stops the window: once the
messages before the failed one are answered (or the connection is gone), what was confirmed before it is settled,
nothing from it on, and the failure is raised.

`Window` is the bookkeeping alone (no I/O). `ConfirmingPublisher` is the flow every publisher shares: publish
while fewer than `SEND_WINDOW` messages await their confirm, otherwise wait (`_pump`) for confirms; the real
publisher (broker/publisher.py) pumps pika's I/O, the stub transport of the tests lets a test play the broker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from federationd.errors import TransportError
from federationd.wire import Outgoing

# Messages awaiting their confirm at once: a judgement, not a measured optimum. Enough to keep reading and
# encoding busy across a quorum queue's write; few enough that a refusing broker sees few doomed messages and
# one send holds at most 8 batches of `transport.batch_bytes` (4 MiB by default) unconfirmed.
SEND_WINDOW = 8

Settled = Callable[[], None]


@dataclass
class InFlight:
    """One published message (or, with `tag` None, a marker that is confirmed once everything before it is)."""

    tag: int | None
    kind: str
    message_id: str
    routing_key: str
    on_confirmed: Settled | None
    acked: bool = False


@dataclass(frozen=True)
class Failure:
    """Why the window stopped: "nack" or "return" of `message`, or "lost" (channel or connection) with `error`."""

    what: str
    message: InFlight | None
    error: BaseException | None = None


class Window:
    """The messages awaiting their confirm, oldest first, and the first failure."""

    def __init__(self) -> None:
        self._queue: deque[InFlight] = deque()
        self._next_tag = 1  # a confirming channel numbers its publishes from 1
        self._unacked = 0
        self._lost = False
        self.failure: Failure | None = None

    @property
    def unconfirmed(self) -> int:
        """Messages published and not acked yet."""
        return self._unacked

    @property
    def empty(self) -> bool:
        return not self._queue

    def outstanding(self) -> list[int]:
        """The delivery tags awaiting their confirm, oldest first."""
        return [m.tag for m in self._queue if m.tag is not None and not m.acked]

    def message(self, tag: int) -> InFlight | None:
        return next((m for m in self._queue if m.tag == tag), None)

    def oldest(self) -> InFlight | None:
        """The oldest message still awaiting its confirm (markers skipped)."""
        return next((m for m in self._queue if m.tag is not None and not m.acked), None)

    def put(self, message: Outgoing, routing_key: str, on_confirmed: Settled | None) -> int:
        """Note a message about to be published; returns its delivery tag."""
        tag, self._next_tag = self._next_tag, self._next_tag + 1
        self._queue.append(InFlight(tag, message.kind, message.message_id, routing_key, on_confirmed))
        self._unacked += 1
        return tag

    def mark(self, on_confirmed: Settled) -> None:
        """Run `on_confirmed` once everything published so far is confirmed."""
        self._queue.append(InFlight(None, "", "", "", on_confirmed, acked=True))

    def ack(self, tag: int, multiple: bool) -> None:
        for message in self._queue:
            if message.tag is None or message.acked:
                continue
            if message.tag == tag or (multiple and message.tag < tag):
                message.acked = True
                self._unacked -= 1
            elif message.tag > tag:
                break

    def nack(self, tag: int, multiple: bool) -> None:
        refused = next((m for m in self._queue if m.tag is not None and not m.acked
                        and (m.tag == tag or (multiple and m.tag < tag))), None)
        self._fail(Failure("nack", refused or self.oldest()))

    def returned(self, message_id: str | None) -> None:
        """The broker returned the message with this id (unroutable): it never counts as confirmed."""
        match = next((m for m in self._queue if m.tag is not None and m.message_id == message_id), None)
        self._fail(Failure("return", match or self.oldest()))

    def lost(self, error: BaseException) -> None:
        """The channel or the connection is gone: nothing not yet acked will be."""
        self._lost = True
        self._fail(Failure("lost", self.oldest(), error))

    @property
    def answering(self) -> bool:
        """After a nack or a return: messages published before the failed one still await an answer that may
        come (the broker returns an unroutable message at once, but confirms a persisted one after its write)."""
        failed = self.failure.message if self.failure is not None else None
        if self._lost or failed is None or failed.tag is None:
            return False
        return any(m.tag < failed.tag for m in self._queue if m.tag is not None and not m.acked)

    def _fail(self, failure: Failure) -> None:
        if self.failure is None:  # the first failure is the one reported
            self.failure = failure

    def confirmed(self) -> list[Settled]:
        """Remove the messages confirmed in order (each acked, every earlier one too, none failed) and return
        their `on_confirmed`, oldest first."""
        stop = self.failure.message if self.failure is not None else None
        done: list[Settled] = []
        while self._queue and self._queue[0].acked and self._queue[0] is not stop:
            message = self._queue.popleft()
            if message.on_confirmed is not None:
                done.append(message.on_confirmed)
        return done


class ConfirmingPublisher(ABC):
    """Publishing with up to `SEND_WINDOW` messages awaiting their confirm; subclasses put messages on the wire
    (`_send`) and wait for the broker's answers (`_pump`, which records them in `self._window`)."""

    site: str
    window_size = SEND_WINDOW

    def __init__(self) -> None:
        self._window = Window()

    def publish(self, message: Outgoing, routing_key: str) -> None:
        """Publish and return once the broker confirmed it (and everything published before)."""
        self.stream(message, routing_key)
        self.drain()

    def stream(self, message: Outgoing, routing_key: str, on_confirmed: Settled | None = None) -> None:
        """Publish without waiting for the confirm (unless the window is full); `on_confirmed` runs, in this
        thread and in publish order, once the message and every earlier one were confirmed. Raises the first
        failure (after settling what was confirmed before it)."""
        self._wait(lambda: self._window.unconfirmed < self.window_size)
        if self._window.empty:  # nothing in flight: a connection lost meanwhile can be replaced, nothing is lost
            self._revive()
        self._may_publish()
        tag = self._window.put(message, routing_key, on_confirmed)
        self._send(message, routing_key, tag)
        self._settle()

    def then(self, on_confirmed: Settled) -> None:
        """Run `on_confirmed` once everything published so far was confirmed (at once if it all was)."""
        self._window.mark(on_confirmed)
        self._settle()

    def drain(self) -> None:
        """Wait until everything published was confirmed and settled; raise the first failure."""
        self._wait(lambda: self._window.empty)

    def _wait(self, done: Callable[[], bool]) -> None:
        self._settle()
        while self._window.failure is not None or not done():  # a failure not raised yet awaits earlier answers
            self._pump()
            self._settle()

    def _settle(self) -> None:
        for on_confirmed in self._window.confirmed():
            on_confirmed()
        if self._window.failure is not None and not self._window.answering:
            raise self._error(self._window.failure)

    def _error(self, failure: Failure) -> Exception:
        """The exception the send raises for `failure` (publishers add their endpoint and map lost channels)."""
        message = failure.message
        kind = message.kind if message is not None else "our"
        if failure.what == "return" and message is not None:
            return TransportError(f"{self.site}: broker {self._where()} could not route our {kind} message "
                                  f"(no queue bound for {message.routing_key!r})", site=self.site)
        if failure.what == "nack":
            return TransportError(f"{self.site}: broker {self._where()} refused (nacked) our {kind} message",
                                  site=self.site)
        if isinstance(failure.error, Exception):
            return failure.error
        return TransportError(f"{self.site}: lost the channel to broker {self._where()}", site=self.site)

    def _revive(self) -> None:
        """With nothing awaiting a confirm: replace a connection the broker closed while we were busy elsewhere
        (the real publisher; a stub has nothing to replace)."""
        return None

    @abstractmethod
    def _may_publish(self) -> None:
        """Raise if nothing more may be published (fencing, a cancel)."""

    @abstractmethod
    def _where(self) -> str:
        """The broker, as error messages name it."""

    @abstractmethod
    def _send(self, message: Outgoing, routing_key: str, tag: int) -> None:
        """Put one message on the wire; a failure is recorded in `self._window`, not raised."""

    @abstractmethod
    def _pump(self) -> None:
        """Wait a little for the broker's answers and record them in `self._window`; never raises for the
        broker's sake (a lost connection is `self._window.lost(...)`)."""
