"""Work beside the main thread: a producer that runs an iterator ahead of its consumer, and a consumer thread.

A dub's passes over the video are chains of C work driven one frame at a time from Python — decoding
(libavcodec), scaling (swscale, OpenCV), face analysis (MediaPipe), the VAE (torch), H.264 encoding (x264) —
and each of them releases the GIL. Run in one thread they take turns on the CPU; split over two threads
joined by a short queue, decoding the next frames overlaps analysing, encoding or pasting the current ones.
The queues hold a few items, so memory stays bounded whatever the video's length.

An exception in a background thread is raised in the main thread at its next call (with its own traceback),
and closing either side stops its thread, so an error or an interrupt leaves no thread running.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")

_ITEM, _END, _ERROR = "item", "end", "error"
_POLL_S = 0.05  # how often a blocked thread looks whether the other side has closed


class Prefetch(Generic[T]):
    """Iterates ``source`` in a background thread, up to ``depth`` items ahead of the consumer.

    Args:
        source: Anything iterable; it is iterated (and, if it is a generator, closed) in the background thread
            only, so it may hold objects that are not thread-safe as long as nothing else touches them meanwhile.
        depth: Items produced ahead (at least 1).
        name: Name of the thread (shows in stack dumps).
    """

    def __init__(self, source: Iterable[T], depth: int = 4, name: str = "dub-prefetch"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._stop = threading.Event()
        self._finished = False
        self._thread = threading.Thread(target=self._run, args=(source,), name=name, daemon=True)
        self._thread.start()

    def _put(self, message: tuple) -> bool:
        """Queue ``message`` unless the consumer closed first; whether it was queued."""
        while not self._stop.is_set():
            try:
                self._queue.put(message, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, source: Iterable[T]) -> None:
        iterator = iter(source)
        try:
            for item in iterator:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as err:  # raised again in the consumer's thread
            self._put((_ERROR, err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        kind, value = self._queue.get()
        if kind == _ITEM:
            return value
        self._finished = True
        self._thread.join()
        if kind == _ERROR:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the background thread (dropping what it produced ahead) and wait for it."""
        self._finished = True
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_S)  # a producer blocked on a full queue then sees the stop
        self._thread.join()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Behind(Generic[T]):
    """Calls ``consume(item)`` in a background thread for every item :meth:`put`, at most ``depth`` items behind.

    Args:
        consume: Called with each item, in order, in the background thread only.
        depth: Items queued before :meth:`put` waits (at least 1).
        name: Name of the thread.
    """

    def __init__(self, consume: Callable[[T], object], depth: int = 4, name: str = "dub-behind"):
        self._consume = consume
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            kind, item = self._queue.get()
            if kind == _END:
                return
            if self._error is not None:
                continue  # after a failure the queue is only drained, so that put() never blocks for good
            try:
                self._consume(item)
            except BaseException as err:  # raised again in the caller's thread
                self._error = err

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, item: T) -> None:
        """Hand ``item`` to the background thread.

        Raises:
            BaseException: What an earlier ``consume`` raised.
        """
        self._raise()
        while True:
            try:
                self._queue.put((_ITEM, item), timeout=_POLL_S)
                return
            except queue.Full:
                self._raise()

    def join(self) -> None:
        """Wait until every item is consumed and stop the thread.

        Raises:
            BaseException: What a ``consume`` raised.
        """
        if self._thread.is_alive():
            self._queue.put((_END, None))  # the thread drains the queue, so this returns
            self._thread.join()
        self._raise()

    def abort(self) -> None:
        """Stop the thread without raising; items still queued are dropped."""
        if self._thread.is_alive():
            self._error = self._error or _Aborted()
            self._queue.put((_END, None))
            self._thread.join()


class _Aborted(Exception):
    """Marks a :class:`Behind` stopped by :meth:`Behind.abort` (its queued items are dropped)."""
