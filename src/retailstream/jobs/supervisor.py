"""Keeping a streaming query alive across transient failures.

A query that fails (a broker gone away, a network blip) is restarted from its
checkpoint, which is what makes the restart lose and repeat nothing. Failures
that a restart cannot cure (declared fatal by the caller) end the job.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol

from retailstream.jobs.interrupts import AwaitableQuery, await_query
from retailstream.jobs.launcher import _first_line


class SupervisedQuery(AwaitableQuery, Protocol):
    """What `run_supervised` uses of a StreamingQuery (tests pass stand-ins)."""

    @property
    def name(self) -> str: ...

    def stop(self) -> None: ...


def run_supervised(
    start_query: Callable[[], SupervisedQuery],
    max_restarts: int,
    backoff_s: float,
    fatal: Callable[[Exception], Exception | None] = lambda exc: None,
    transient: Callable[[Exception], bool] = lambda exc: True,
    wait_until_ready: Callable[[], bool] = lambda: True,
) -> int:
    """Run the query until it ends by itself; return how many restarts it took.

    `fatal(exc)` returns the error to raise instead of restarting (or None);
    only failures that `transient(exc)` accepts are restarted, others re-raised.
    `wait_until_ready()` is polled before a restart (e.g. "the broker answers").
    """
    restarts = 0
    while True:
        query = start_query()
        try:
            await_query(query)
            return restarts
        except Exception as exc:  # StreamingQueryException and Py4J errors alike
            stop_error = fatal(exc)
            if stop_error is not None:
                raise stop_error from exc
            if restarts >= max_restarts or not transient(exc):
                raise
            restarts += 1
            print(
                f"query {query.name} stopped: {_first_line(exc)}; restarting from its checkpoint "
                f"({restarts}/{max_restarts})",
                file=sys.stderr,
            )
        finally:
            if query.isActive:
                query.stop()
        time.sleep(backoff_s)
        while not wait_until_ready():
            time.sleep(backoff_s)
