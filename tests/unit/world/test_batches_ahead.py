"""The generator run ahead in a child process gives the batches it would give here,
and hands its state back so that the world carries on where the stream stopped."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from retailstream.kafka.batch_sources import BatchesAhead, InlineBatches, WireBatch, can_run_ahead
from retailstream.world import EventGenerator, build_world
from retailstream.world.simtime import wall_clock

START = datetime(2026, 6, 1, 9, tzinfo=UTC)
SIZES = (700, 1, 1500, 40)


def _generator(clock=None) -> EventGenerator:  # noqa: ANN001 - a clock or None
    return EventGenerator(build_world(5, "small"), 5, START, 0.5, clock=clock)


def _content(batch: WireBatch) -> tuple:
    return batch.topics, batch.keys, batch.values, batch.first_seq, batch.emit_times_ms, batch.truth


@pytest.mark.timeout(120)
def test_batches_made_in_a_child_equal_those_made_here_and_the_world_carries_on() -> None:
    here, there = _generator(), _generator()
    source = BatchesAhead(there, depth=2)
    for n in SIZES:
        source.ask(n)
    made = [source.take(), source.take(), *source.close()]  # two in flight at the stop

    expected = InlineBatches(here)
    for n in SIZES:
        expected.ask(n)
    assert [_content(b) for b in made] == [_content(b) for b in expected.close()]
    assert sum(map(len, made)) == sum(SIZES)
    assert any(b.truth["defects"] for b in made), "the default defects travel with their batch"
    # The generator handed in now stands where the child stopped.
    assert there.records_emitted == here.records_emitted == sum(SIZES)
    assert there.next_batch(300).records == here.next_batch(300).records


def test_only_a_generator_whose_clock_can_travel_runs_ahead() -> None:
    assert can_run_ahead(_generator())
    assert can_run_ahead(_generator(clock=wall_clock))
    assert not can_run_ahead(_generator(clock=lambda: datetime.now(UTC)))
