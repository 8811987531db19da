"""Generator throughput, side by side with the Kafka producer it feeds.

Measured alternately in one run, each on the same number of events:

- generate: `EventGenerator.next_batch` alone (pure Python, one core), with
  the world and seed of the config, one simulated second between shop events
  (so all six topics appear) and the configured share of defects;
- Kafka produce only, the baseline: the same records, generated beforehand,
  sent to a throwaway local broker with the project's idempotent producer and
  flushed: how fast Kafka takes them with no generator in front;
- generate + produce: `publish()`, what `retailstream produce` does flat out
  (generation, produce, ground truth written as Parquet).

A ratio above 1 for `generate` means the simulation outruns the producer.

    .venv/bin/python bench/bench_generator.py [--quick]
"""

from __future__ import annotations

import shutil
import sys
from datetime import UTC, datetime

from harness import (
    Case,
    parse_args,
    publish_results,
    run_alternating,
    workspace,
)

from retailstream.config import Settings
from retailstream.io.truth import TruthWriter, truth_dir
from retailstream.jobs.produce_events import defect_rates
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.publish import publish
from retailstream.kafka.topics import create_topics
from retailstream.world import EventGenerator, KafkaRecord, World, build_world

START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
SIM_SECONDS_PER_EVENT = 1.0
GENERATE = "generate (next_batch)"
PRODUCE_ONLY = "Kafka produce only (pre-generated)"
PUBLISH = "generate + produce (publish)"


def new_generator(world: World, settings: Settings) -> EventGenerator:
    """A generator from the same seed and start, so every repetition does identical work."""
    return EventGenerator(
        world,
        settings.world.seed,
        START,
        sim_seconds_per_event=SIM_SECONDS_PER_EVENT,
        defect_rates=defect_rates(settings.generator.defect_share),
    )


def generate(generator: EventGenerator, events: int, batch_size: int) -> list[KafkaRecord]:
    records: list[KafkaRecord] = []
    while len(records) < events:
        records.extend(generator.next_batch(min(batch_size, events - len(records))).records)
    return records


def produce_all(bootstrap: str, records: list[KafkaRecord]) -> int:
    """Send `records` and wait until Kafka acknowledged every one; return how many."""
    client = producer(bootstrap)
    for topic, key, value in records:
        while True:
            try:
                client.produce(topic, value=value, key=key)
                break
            except BufferError:  # the local queue is full: let the client deliver first
                client.poll(0.05)
    flush_or_fail(client)
    return len(records)


def main() -> int:
    args = parse_args(__doc__)
    events = 20_000 if args.quick else 1_000_000
    repetitions = args.repetitions or (2 if args.quick else 5)
    warmup = 1 if args.warmup is None else args.warmup

    with workspace("generator") as (tmp, settings):
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        world = build_world(settings.world.seed, settings.world.scale)
        batch_size = settings.generator.batch_size
        pregenerated = generate(new_generator(world, settings), events, batch_size)
        mean_value_bytes = sum(len(r.value) for r in pregenerated) / events

        # What `prepare` sets up for the next timed `run` of a case.
        generator = new_generator(world, settings)
        truth = TruthWriter(tmp / "truth")

        def fresh_generator() -> None:
            nonlocal generator
            generator = new_generator(world, settings)

        def fresh_generator_and_truth() -> None:
            nonlocal truth
            fresh_generator()
            shutil.rmtree(tmp / "truth", ignore_errors=True)
            truth = TruthWriter(tmp / "truth")

        def run_publish() -> int:
            client = producer(settings.kafka.bootstrap)
            return publish(generator, client, truth, None, events, None, batch_size).events

        cases = [
            Case(GENERATE, lambda: len(generate(generator, events, batch_size)), fresh_generator),
            Case(PRODUCE_ONLY, lambda: produce_all(settings.kafka.bootstrap, pregenerated)),
            Case(PUBLISH, run_publish, fresh_generator_and_truth),
        ]
        print(f"{events:,} events per repetition, {warmup} warm-up + {repetitions} rounds")
        results = run_alternating(cases, repetitions, warmup)
        # Left by the last publish round: how compact one run's ground truth is.
        truth_files = {
            folder.name: len(list(folder.glob("*.parquet")))
            for folder in sorted(truth_dir(tmp / "truth").iterdir())
        }

    generate_rate = results[GENERATE].median_rate
    notes = [
        f"Generation alone runs at **{generate_rate / results[PRODUCE_ONLY].median_rate:.2f}×** "
        f"the producer's pace; `publish()` reaches "
        f"**{results[PUBLISH].median_rate / generate_rate:.2f}×** of generation alone. Record "
        f"values average {mean_value_bytes:.0f} bytes, so generation emits about "
        f"{generate_rate * mean_value_bytes / 2**20:.0f} MiB/s of JSON. One run's ground "
        f"truth: {sum(truth_files.values())} Parquet files "
        f"({', '.join(f'{t} {n}' for t, n in truth_files.items())}).",
    ]
    publish_results(
        "generator",
        "Event generator (`bench/bench_generator.py`)",
        "Events per second of `EventGenerator.next_batch` alone and of `publish()` (generate + "
        "produce + ground truth), against the baseline of the Kafka producer sending the same "
        f"records, pre-generated, to a local broker. World `{settings.world.scale}`, "
        f"{SIM_SECONDS_PER_EVENT:g} simulated s per shop event, "
        f"{settings.generator.defect_share:.0%} defects, batches of {batch_size:,}.",
        results,
        baseline=PRODUCE_ONLY,
        params={"events": events, "repetitions": repetitions, "warmup": warmup},
        quick=args.quick,
        notes=notes,
        extra={
            "mean_value_bytes": mean_value_bytes,
            "batch_size": batch_size,
            "world_scale": settings.world.scale,
            "sim_seconds_per_event": SIM_SECONDS_PER_EVENT,
            "defect_share": settings.generator.defect_share,
            "truth_files_per_run": truth_files,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
