"""The server's worker: one thread runs the models, fed by a bounded queue.

Requests never run models on the event loop: they queue a :class:`Work` item and wait for its
future. The queue is bounded (:class:`Busy` when full, answered 429), so memory stays flat under
any load. Items of one ``batch_key`` waiting together (super-resolution at one rate) run as one
batch through the pipeline's ``*_many`` call. Streaming work puts blocks on a per-request queue and
stops between blocks once its request is cancelled (the client went away or timed out).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Busy", "Engine", "StreamClosed", "Work"]

log = logging.getLogger("hierspeech2.serving")

_END = object()


class Busy(Exception):
    """The queue is full; try again after :attr:`retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


class StreamClosed(Exception):
    """The request of a stream went away; its work stops at the next block."""


@dataclass
class Work:
    """One queued request: ``run(inputs)`` for a batch of ``inputs`` (one item: ``[input]``)."""

    run: Callable[[Sequence[Any]], Sequence[Any]]
    input: Any = None
    batch_key: Any = None
    future: Future = field(default_factory=Future)


class Engine:
    """A bounded queue of :class:`Work` and one thread that runs it (one per device: start one server
    per GPU and balance in front, see README "Serving")."""

    def __init__(self, queue_size: int, max_batch: int = 8) -> None:
        self.queue_size = queue_size
        self.max_batch = max_batch
        self._items: collections.deque[Work] = collections.deque()
        self._ready = threading.Condition()
        self._closed = False
        self.running = 0
        self._thread = threading.Thread(target=self._work, name="hierspeech2-engine", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        return len(self._items)

    def submit(self, work: Work) -> Future:
        """Queue ``work``; :class:`Busy` when ``queue_size`` items already wait."""
        with self._ready:
            if self._closed:
                raise RuntimeError("the engine is closed")
            if len(self._items) >= self.queue_size:
                raise Busy(retry_after=max(1, len(self._items) // 2))
            self._items.append(work)
            self._ready.notify()
        return work.future

    def call(self, function: Callable[[], Any]) -> Future:
        """Queue ``function()`` alone."""
        return self.submit(Work(lambda inputs: [function()], None))

    def stream(self, blocks: Callable[[], Iterator[Any]], cancelled: threading.Event) -> queue.Queue:
        """Queue a generator: its blocks (then an end marker, or the exception) arrive on the returned queue.

        The worker stops taking blocks once ``cancelled`` is set.
        """
        out: queue.Queue = queue.Queue()

        def run(_: Sequence[Any]) -> list[None]:
            try:
                for block in blocks():
                    if cancelled.is_set():
                        raise StreamClosed
                    out.put(block)
            except StreamClosed:
                log.info("stream cancelled: its client went away")
            except BaseException as error:  # noqa: BLE001  (handed to the request, which answers it)
                out.put(error)
            finally:
                out.put(_END)
            return [None]

        self.submit(Work(run))
        return out

    @staticmethod
    def is_end(item: Any) -> bool:
        return item is _END

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        self._thread.join(timeout=5)

    def _next_batch(self) -> list[Work] | None:
        with self._ready:
            while not self._items and not self._closed:
                self._ready.wait()
            if self._closed and not self._items:
                return None
            first = self._items.popleft()
            batch = [first]
            if first.batch_key is not None:
                for item in list(self._items):
                    if len(batch) >= self.max_batch:
                        break
                    if item.batch_key == first.batch_key:
                        self._items.remove(item)
                        batch.append(item)
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            batch = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            self.running = len(batch)
            try:
                results = batch[0].run([item.input for item in batch])
                for item, result in zip(batch, results):
                    if isinstance(result, BaseException):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)
            except BaseException as error:  # noqa: BLE001  (each waiting request answers it)
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
            finally:
                self.running = 0
