"""Where `publish` gets its batches: from the generator in this process, or from
the generator in a child process, a few batches ahead of the producer.

Flat out, one Python thread cannot both simulate (about 170k events/s alone) and
produce (about 380k/s alone): taking turns, they reach about 80k/s. Here the
generator runs in a spawned child that keeps up to `depth` batches ready while
this process produces the previous ones.

- Batches cross the pipe as columns (topic, key and value lists): they pickle
  about ten times cheaper than a list of record tuples.
- Every batch the child makes is handed over and must be produced: `close()`
  returns the ones still in flight, so what Kafka holds always matches the
  generator's state. `close()` also moves the caller's generator to the child's
  state, so a saved world resumes exactly where the stream stopped.
- The child ignores SIGINT: on Ctrl-C the parent decides what is still produced.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from retailstream.errors import UserError
from retailstream.world import EventBatch, EventGenerator

# Batches the child keeps ready: enough to ride out a slow produce round, few enough
# that a stop produces little more than it asked for.
DEPTH = 3


@dataclass
class WireBatch:
    """An `EventBatch` as columns, the shape that crosses the pipe cheaply."""

    topics: list[str]
    keys: list[bytes]
    values: list[bytes]
    first_seq: int
    emit_times_ms: list[int]
    truth: dict[str, list[dict]] = field(default_factory=dict)

    @classmethod
    def of(cls, batch: EventBatch) -> WireBatch:
        records = batch.records
        topics = [r.topic for r in records]
        keys = [r.key for r in records]
        values = [r.value for r in records]
        return cls(
            topics, keys, values, batch.first_seq, batch.emit_times_ms,
            {"defects": batch.defects, "shipment_truth": batch.shipment_truth,
             "rating_truth": batch.rating_truth, "stockouts": batch.stockouts},
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.values)


class InlineBatches:
    """Batches made here, when asked for: the paced (live) case, and small runs, where
    starting a child would cost more than it saves."""

    depth = 1

    def __init__(self, generator: EventGenerator) -> None:
        self.generator = generator
        self._asked: deque[int] = deque()

    def ask(self, n: int) -> None:
        self._asked.append(n)

    @property
    def in_flight(self) -> int:
        return len(self._asked)

    def take(self) -> WireBatch:
        return WireBatch.of(self.generator.next_batch(self._asked.popleft()))

    def close(self) -> list[WireBatch]:
        return [self.take() for _ in range(len(self._asked))]

    def abandon(self) -> None:
        self._asked.clear()


def can_run_ahead(generator: EventGenerator) -> bool:
    """Whether the generator can move to a child: its clock (if any) must pickle, as a
    module-level function does and a lambda does not."""
    clock = generator._clock  # noqa: SLF001 - the one attribute its pickled state leaves out
    try:
        pickle.dumps(clock)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def _child(
    state: bytes, clock: Callable[[], datetime] | None, requests: Connection, results: Connection
) -> None:
    """The child's loop: one batch per requested size, then its final state on None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    generator: EventGenerator = pickle.loads(state)
    generator.use_clock(clock, generator.sim_seconds_per_event)
    try:
        while (n := requests.recv()) is not None:
            results.send(WireBatch.of(generator.next_batch(n)))
        results.send(generator)
    except EOFError:  # the parent went away: nothing is left to hand the batches to
        pass
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        results.send(("error", traceback.format_exc()))


class BatchesAhead:
    """Batches from `generator` made in a child process, in the order they are asked for."""

    def __init__(self, generator: EventGenerator, depth: int = DEPTH) -> None:
        self.generator, self.depth = generator, depth
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        child_requests, self._requests = context.Pipe(duplex=False)
        self._results, child_results = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(pickle.dumps(generator), generator._clock, child_requests, child_results),  # noqa: SLF001
            name="retailstream-generator",
            daemon=True,
        )
        self._process.start()
        child_requests.close()
        child_results.close()
        self._asked: deque[int] = deque()
        # Received on a thread, so that Ctrl-C in this one never cuts a message in half.
        self._received: queue.Queue[Any] = queue.Queue()
        self._reader = threading.Thread(target=self._receive, daemon=True)
        self._reader.start()

    def _receive(self) -> None:
        try:
            while True:
                item = self._results.recv()
                self._received.put(item)
                if not isinstance(item, WireBatch):
                    return
        except (EOFError, OSError):
            self._received.put(("error", "the generator process ended unexpectedly"))

    def ask(self, n: int) -> None:
        """Have the child make a batch of `n` records (taken later, in order)."""
        self._requests.send(n)
        self._asked.append(n)

    @property
    def in_flight(self) -> int:
        return len(self._asked)

    def take(self) -> WireBatch:
        """The oldest batch asked for (blocks until the child has made it)."""
        if not self._asked:
            raise RuntimeError("take() without a batch asked for")
        item = self._next()
        if not isinstance(item, WireBatch):
            raise RuntimeError(f"the generator process sent {type(item).__name__}, not a batch")
        self._asked.popleft()
        return item

    def _next(self) -> Any:
        while True:
            try:
                item = self._received.get(timeout=0.5)
            except queue.Empty:
                continue
            if isinstance(item, tuple) and item[:1] == ("error",):
                raise UserError(f"the event generator failed in its process: {item[1]}")
            return item

    def close(self) -> list[WireBatch]:
        """Stop the child. Returns the batches still in flight (to be produced), and moves
        `generator` to the state after the last of them."""
        rest = [self.take() for _ in range(len(self._asked))]
        self._requests.send(None)
        final = self._next()
        if not isinstance(final, EventGenerator):
            raise RuntimeError(f"the generator process sent {type(final).__name__} at the end")
        self.generator.adopt(final)
        self._process.join(timeout=30)
        self._requests.close()
        self._results.close()
        return rest

    def abandon(self) -> None:
        """End the child without waiting for its state (after an error)."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=30)
