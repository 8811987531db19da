"""Ctrl-C and `kill` while streaming queries run: a request to stop, not an exception
thrown into whatever the driver was doing.

PySpark's own SIGINT handler calls `cancelAllJobs` over Py4J from inside the signal
handler. That call can land in the middle of another Py4J call of the main thread
(Python then reports a "reentrant call"), and it fails the running batch of every
query with a Java stack trace, before the command gets to stop its queries in order.
A KeyboardInterrupt raised inside a blocking Py4J call (`awaitTermination`) is logged
by Py4J with a traceback too. So while a command waits on its queries, the signals
only set a flag, and the main thread, polling between short Py4J calls, stops the
queries itself: each resumes from its checkpoint next time. A second Ctrl-C, or any
outside such a wait, interrupts at once as before.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol

from pyspark.sql.streaming import StreamingQuery

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How often a waiting command asks whether its queries are still running (a cheap
# Py4J call): also how late it notices that an available-now run has ended.
POLL_S = 0.1


class AwaitableQuery(Protocol):
    """What `await_query` uses of a StreamingQuery (tests pass stand-ins)."""

    @property
    def isActive(self) -> bool: ...

    def awaitTermination(self) -> object: ...


class StopRequest:
    """Set by SIGINT or SIGTERM inside `stop_requests()`; polled by the main thread."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self._event.is_set():
            raise KeyboardInterrupt  # asked twice: stop now
        self._event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as a stop has been requested."""
        return self._event.wait(seconds)


@contextmanager
def stop_requests() -> Iterator[StopRequest]:
    """While inside, SIGINT and SIGTERM set the yielded request instead of raising.

    Signal handlers belong to the main thread: elsewhere the request is never set and
    the signals keep their handlers.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    before = {number: signal.getsignal(number) for number in _SIGNALS}
    for number in _SIGNALS:
        signal.signal(number, request)
    try:
        yield request
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


def await_query(
    query: AwaitableQuery, tick: Callable[[], object] = lambda: None, tick_every_s: float = 5.0
) -> None:
    """`query.awaitTermination()`, waited for in Python between short Py4J calls, calling
    `tick()` every `tick_every_s` while it runs.

    Raises KeyboardInterrupt when Ctrl-C or `kill` asks to stop (the caller stops the
    query), and the query's own error when it failed.
    """
    next_tick = time.monotonic() + tick_every_s
    with stop_requests() as request:
        while query.isActive:
            if request.wait(POLL_S):
                raise KeyboardInterrupt
            if time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + tick_every_s
    query.awaitTermination()  # ended: returns at once, or raises what ended it


def await_queries(
    *queries: StreamingQuery, tick: Callable[[], object] = lambda: None, tick_every_s: float = 5.0
) -> None:
    """Wait for every query to end (as `await_query`); on a stop request, stop them all,
    each at a batch boundary, then raise KeyboardInterrupt."""
    try:
        for query in queries:
            await_query(query, tick, tick_every_s)
    except KeyboardInterrupt:
        for query in queries:
            if query.isActive:
                query.stop()
        raise
