"""The dub's background threads: a producer that runs ahead and a consumer that runs behind, and how they stop."""

from __future__ import annotations

import threading
import time

import pytest

from eval.dub.background import Behind, Prefetch


def _threads(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_prefetch_yields_every_item_in_order_and_its_thread_ends():
    with Prefetch(range(50), depth=3, name="test-prefetch-order") as items:
        assert list(items) == list(range(50))
        assert next(items, None) is None  # stays exhausted
    assert _threads("test-prefetch-order") == []


def test_prefetch_runs_at_most_depth_items_ahead():
    made = []

    def source():
        for i in range(100):
            made.append(i)
            yield i

    with Prefetch(source(), depth=4, name="test-prefetch-depth") as items:
        assert next(items) == 0
        time.sleep(0.3)
        # One item handed out, `depth` queued, and one more made while waiting for room in the queue.
        assert len(made) <= 1 + 4 + 1


def test_prefetch_raises_the_sources_error_in_the_consumer_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise ValueError("damaged at frame 2")

    items = Prefetch(source(), depth=8, name="test-prefetch-error")
    assert next(items) == 1 and next(items) == 2
    with pytest.raises(ValueError, match="damaged at frame 2"):
        next(items)
    items.close()
    assert _threads("test-prefetch-error") == []


def test_closing_a_prefetch_early_stops_its_thread_and_closes_the_generator():
    closed = threading.Event()

    def endless():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed.set()

    items = Prefetch(endless(), depth=2, name="test-prefetch-close")
    assert next(items) == 0
    items.close()
    assert closed.is_set() and _threads("test-prefetch-close") == []


def test_behind_consumes_every_item_in_order():
    got = []
    behind = Behind(got.append, depth=2, name="test-behind-order")
    for i in range(30):
        behind.put(i)
    behind.join()
    assert got == list(range(30)) and _threads("test-behind-order") == []


def test_behind_raises_the_consumers_error_at_the_next_put_or_join():
    def consume(item):
        if item == 3:
            raise OSError("disk full")

    behind = Behind(consume, depth=1, name="test-behind-error")
    with pytest.raises(OSError, match="disk full"):
        for i in range(1000):  # the error surfaces at a put shortly after item 3, or at join
            behind.put(i)
        behind.join()
    behind.abort()
    assert _threads("test-behind-error") == []


def test_behind_abort_drops_the_queued_items_and_stops():
    started, release, got = threading.Event(), threading.Event(), []

    def consume(item):
        started.set()
        release.wait(5)
        got.append(item)

    behind = Behind(consume, depth=4, name="test-behind-abort")
    for i in range(5):
        behind.put(i)  # 0 is being consumed, 1-4 wait in the queue
    started.wait(5)
    stopper = threading.Thread(target=behind.abort)  # waits for the item in progress
    stopper.start()
    time.sleep(0.2)
    release.set()
    stopper.join(5)
    assert got == [0] and _threads("test-behind-abort") == []
