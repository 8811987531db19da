"""Throughput of the event generator, on one core: `python -m retailstream.world.throughput`.

Measures `next_batch(batch_size)` per scale, after one warm-up batch, and reports the
median and best events/s with the topic mix. Meant to be called from bench/, which owns
writing results; this module only measures and prints.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime

from retailstream.world.generator import EventGenerator
from retailstream.world.reference import build_world

DEFAULT_START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Throughput:
    """Measured generator speed for one scale."""

    scale: str
    sim_seconds_per_event: float
    batch_size: int
    build_seconds: float
    median_events_per_second: float
    best_events_per_second: float
    topic_share: dict[str, float]


def measure_throughput(
    scale: str,
    batch_size: int = 100_000,
    batches: int = 5,
    sim_seconds_per_event: float = 0.001,
    seed: int = 1,
) -> Throughput:
    """Time `batches` calls of next_batch(batch_size) after a warm-up batch."""
    started = time.perf_counter()
    world = build_world(seed, scale)  # type: ignore[arg-type]
    build_seconds = time.perf_counter() - started
    generator = EventGenerator(
        world, seed, DEFAULT_START, sim_seconds_per_event=sim_seconds_per_event
    )
    generator.next_batch(batch_size)  # warm-up: caches, first shipments
    rates: list[float] = []
    topics: Counter[str] = Counter()
    for _ in range(batches):
        started = time.perf_counter()
        batch = generator.next_batch(batch_size)
        rates.append(batch_size / (time.perf_counter() - started))
        topics.update(r.topic for r in batch.records)
    total = sum(topics.values())
    return Throughput(
        scale=scale,
        sim_seconds_per_event=sim_seconds_per_event,
        batch_size=batch_size,
        build_seconds=build_seconds,
        median_events_per_second=statistics.median(rates),
        best_events_per_second=max(rates),
        topic_share={t: n / total for t, n in sorted(topics.items())},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", default=["small", "demo", "large"])
    parser.add_argument("--batch-size", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--sim-seconds-per-event", type=float, default=0.001)
    args = parser.parse_args(argv)
    print("| scale | build s | median events/s | best events/s | topic mix |")
    print("|---|---|---|---|---|")
    for scale in args.scales:
        result = measure_throughput(
            scale, args.batch_size, args.batches, args.sim_seconds_per_event
        )
        mix = ", ".join(f"{t} {s:.1%}" for t, s in result.topic_share.items())
        print(
            f"| {scale} | {result.build_seconds:.2f} | {result.median_events_per_second:,.0f} "
            f"| {result.best_events_per_second:,.0f} | {mix} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
