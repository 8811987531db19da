"""The read-your-writes wait on a simulated clock: it polls until the view includes the
token or the wait runs out, and reports exactly how long it waited."""

from __future__ import annotations

import asyncio

from retailstream.serve.consistency import ConsistencyToken, wait_until_included

TOKEN = ConsistencyToken("shop.ratings", 1, 41)


class SimulatedTime:
    """A clock that only moves when the wait sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _wait(positions: list[dict[int, int]], max_wait_s: float, time: SimulatedTime):  # noqa: ANN202
    """Wait with the view's positions read from `positions`, one entry per poll (the
    last one repeats)."""
    reads = iter(positions)
    last: dict[int, int] = {}

    def read() -> dict[int, int]:
        nonlocal last
        last = next(reads, last)
        return last

    return asyncio.run(
        wait_until_included(read, TOKEN, max_wait_s, 0.1, clock=time.clock, sleep=time.sleep)
    )


def test_an_included_write_answers_at_once() -> None:
    time = SimulatedTime()
    report = _wait([{1: 41}], max_wait_s=2.0, time=time)
    assert (report.token_satisfied, report.behind_by, report.waited_ms) == (True, 0, 0)
    assert time.sleeps == []


def test_the_wait_ends_at_the_poll_that_sees_the_write() -> None:
    time = SimulatedTime()
    report = _wait([{}, {1: 30}, {1: 40}, {1: 45}], max_wait_s=2.0, time=time)
    assert (report.token_satisfied, report.behind_by) == (True, 0)
    assert len(time.sleeps) == 3 and report.waited_ms == 300


def test_a_write_not_included_in_time_reports_how_far_behind_the_view_is() -> None:
    time = SimulatedTime()
    report = _wait([{0: 900, 1: 38}], max_wait_s=0.25, time=time)
    # Another partition's progress does not count; the last sleep stops at the deadline.
    assert (report.token_satisfied, report.behind_by, report.waited_ms) == (False, 3, 250)
    assert [round(s, 6) for s in time.sleeps] == [0.1, 0.1, 0.05]


def test_no_wait_reads_once() -> None:
    time = SimulatedTime()
    report = _wait([{}], max_wait_s=0.0, time=time)
    # A partition the view has never seen is at -1: offset 41 is 42 behind.
    assert (report.token_satisfied, report.behind_by, report.waited_ms) == (False, 42, 0)
    assert time.sleeps == []
