"""The restart policy of `run_supervised`, on scripted query outcomes."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import pytest

from retailstream.jobs.ingest_events import is_transient
from retailstream.jobs.supervisor import run_supervised


class ScriptedQuery:
    """Stands in for a StreamingQuery that runs for a poll, then ends with `outcome`
    (awaitTermination raises it; None: it ended by itself)."""

    name = "scripted"

    def __init__(self, outcome: Exception | None) -> None:
        self.outcome = outcome
        self.polls = 1
        self.stopped = False

    @property
    def isActive(self) -> bool:
        if self.stopped or self.polls == 0:
            return False
        self.polls -= 1
        return True

    def awaitTermination(self) -> None:
        if self.outcome is not None:
            raise self.outcome

    def stop(self) -> None:
        self.stopped = True


class RunningQuery(ScriptedQuery):
    """Runs until stopped; Ctrl-C reaches this process while it runs."""

    def __init__(self) -> None:
        super().__init__(None)

    @property
    def isActive(self) -> bool:
        if not self.stopped and self.polls:
            self.polls = 0
            os.kill(os.getpid(), signal.SIGINT)
        return not self.stopped


def _starter(
    outcomes: list[Exception | None],
) -> tuple[Callable[[], ScriptedQuery], list[ScriptedQuery]]:
    started: list[ScriptedQuery] = []

    def start() -> ScriptedQuery:
        query = ScriptedQuery(outcomes[len(started)])
        started.append(query)
        return query

    return start, started


def test_transient_failures_restart_until_the_query_ends() -> None:
    broker_gone = RuntimeError("org.apache.kafka.common.errors.TimeoutException: Timed out")
    start, started = _starter([broker_gone, broker_gone, None])
    assert run_supervised(start, max_restarts=5, backoff_s=0, transient=is_transient) == 2
    assert len(started) == 3


def test_other_failures_are_not_retried() -> None:
    start, started = _starter([ValueError("AnalysisException: column not found")])
    with pytest.raises(ValueError):
        run_supervised(start, max_restarts=5, backoff_s=0, transient=is_transient)
    assert len(started) == 1


def test_restarts_are_bounded() -> None:
    gone = RuntimeError("Broker transport failure")
    start, started = _starter([gone] * 4)
    with pytest.raises(RuntimeError):
        run_supervised(start, max_restarts=2, backoff_s=0, transient=is_transient)
    assert len(started) == 3


def test_fatal_errors_replace_the_failure() -> None:
    start, _ = _starter([RuntimeError("data may have been lost")])
    with pytest.raises(LookupError, match="named offsets"):
        run_supervised(start, 5, 0, fatal=lambda exc: LookupError("named offsets"))


def test_ctrl_c_stops_the_running_query_and_is_not_retried() -> None:
    query = RunningQuery()
    with pytest.raises(KeyboardInterrupt):
        run_supervised(lambda: query, max_restarts=5, backoff_s=0, transient=is_transient)
    assert query.stopped, "stopped from its checkpoint, between Py4J calls"
