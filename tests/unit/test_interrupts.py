"""Ctrl-C while a command waits on its queries: a request the main thread sees, not an
exception thrown into a Py4J call (real signals, sent to this process)."""

from __future__ import annotations

import os
import signal

import pytest

from retailstream.jobs.interrupts import StopRequest, stop_requests


@pytest.mark.parametrize("number", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_sets_the_request_and_raises_nothing(number: int) -> None:
    before = signal.getsignal(number)
    with stop_requests() as request:
        assert not request.wait(0)
        os.kill(os.getpid(), number)  # delivered to the main thread before kill returns
        assert request.wait(0)
    assert signal.getsignal(number) is before, "the handler is put back"


def test_asking_twice_interrupts_at_once() -> None:
    with pytest.raises(KeyboardInterrupt), stop_requests():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
    assert not isinstance(signal.getsignal(signal.SIGINT), StopRequest)
