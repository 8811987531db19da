"""Kafka -> bronze ingest, side by side with Spark's bare read of the same topics.

One throwaway local broker is filled once, flat out, with generated events
on the six topics. Then, alternately in one run and one SparkSession:

- bare read, the baseline: Spark's Kafka source over all six topics into the
  `noop` sink (reads and deserialises every record, writes nothing);
- bronze ingest: `jobs.ingest_events.start`, the real query, which reads the
  same records, hashes each one (SHA-256 in Spark's own expressions), appends
  them to the Delta table `bronze_events` (partitioned by topic and Kafka
  date, exactly-once through its checkpoint), and chains each partition's
  batch digest into `bronze_chain`;
- the same rows without hashes or chain, straight into Delta's streaming sink
  (how ingest wrote before tamper-evidence): what tamper-evidence costs.

Both run with `availableNow`, from the earliest offsets, with a fresh
checkpoint (and a fresh bronze table) each repetition. Time is wall time
from `start()` to the query's termination; events/s = records in Kafka /
seconds. The ratio bronze / bare read is what writing the event store costs.

    .venv/bin/python bench/bench_ingest.py [--quick]
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

from harness import (
    Case,
    CaseResult,
    paired_ratios,
    parse_args,
    publish_results,
    run_alternating,
    workspace,
)
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.io.datasets import bronze_table
from retailstream.io.delta import StreamTrigger, append_stream
from retailstream.io.kafka_source import read_kafka_stream
from retailstream.io.truth import TruthWriter
from retailstream.jobs import ingest_events
from retailstream.jobs.produce_events import defect_rates
from retailstream.kafka.clients import producer
from retailstream.kafka.publish import publish
from retailstream.kafka.topics import create_topics, describe_topics
from retailstream.session import build_spark
from retailstream.transforms.bronze import BRONZE_PARTITIONS, to_bronze
from retailstream.world import EventGenerator, build_world

BARE = "bare read (noop sink)"
BRONZE = "ingest to bronze (Delta, hashed and chained)"
UNCHAINED = "ingest to bronze, no hashes (Delta sink)"


def fill_topics(settings: Settings, events: int) -> tuple[int, float]:
    """Produce `events` generated events flat out; return (records in Kafka, events/s)."""
    bootstrap = settings.kafka.bootstrap
    create_topics(bootstrap, settings.kafka.topics)
    generator = EventGenerator(
        build_world(settings.world.seed, settings.world.scale),
        settings.world.seed,
        datetime(2025, 3, 3, 8, 0, tzinfo=UTC),
        sim_seconds_per_event=1.0,  # one simulated second apart: all six topics appear
        defect_rates=defect_rates(settings.generator.defect_share),
    )
    report = publish(
        generator,
        producer(bootstrap),
        TruthWriter(settings.lake.root),
        rate=None,
        max_events=events,
        max_seconds=None,
        batch_size=settings.generator.batch_size,
    )
    records = sum(t.records for t in describe_topics(bootstrap, sorted(settings.kafka.topics)))
    return records, report.rate


class Runs:
    """Fresh lake roots per repetition, and what each query reported about its batches."""

    def __init__(self, settings: Settings, tmp: Path, records: int) -> None:
        self.base = settings
        self.tmp = tmp
        self.records = records
        self.count = 0
        self.current = settings
        self.phases: dict[str, list[dict[str, int]]] = {BARE: [], BRONZE: [], UNCHAINED: []}

    def fresh(self) -> None:
        """Untimed: drop the previous repetition's lake, point settings at a new one."""
        if self.count:
            shutil.rmtree(self.current.lake.root, ignore_errors=True)
        self.count += 1
        root = self.tmp / f"lake-{self.count}"
        self.current = self.base.model_copy(
            update={"lake": self.base.lake.model_copy(update={"root": root})}
        )

    def finish(self, label: str, query: StreamingQuery) -> int:
        """Wait for the query, check it read every record, keep its phase timings."""
        query.awaitTermination()
        if query.exception() is not None:
            raise RuntimeError(f"{label} failed: {query.exception()}")
        progress = query.recentProgress
        rows = sum(p["numInputRows"] for p in progress)
        if rows != self.records:
            raise RuntimeError(f"{label} read {rows:,} records, Kafka holds {self.records:,}")
        phases: Counter[str] = Counter()
        for p in progress:
            phases.update(p["durationMs"])
        self.phases[label].append({**phases, "batches": len(progress)})
        return rows


def bare_read(spark: SparkSession, runs: Runs) -> Callable[[], int]:
    def run() -> int:
        settings = runs.current
        query = (
            read_kafka_stream(spark, settings.kafka, sorted(settings.kafka.topics))
            .writeStream.format("noop")
            .trigger(availableNow=True)
            .option("checkpointLocation", str(settings.lake.checkpoint("bare_read")))
            .start()
        )
        return runs.finish(BARE, query)

    return run


def bronze_ingest(spark: SparkSession, runs: Runs) -> Callable[[], int]:
    def run() -> int:
        query = ingest_events.start(spark, runs.current, StreamTrigger(available_now=True))
        return runs.finish(BRONZE, query)

    return run


def unchained_ingest(spark: SparkSession, runs: Runs) -> Callable[[], int]:
    def run() -> int:
        settings = runs.current
        records = read_kafka_stream(spark, settings.kafka, sorted(settings.kafka.topics))
        query = append_stream(
            records.transform(to_bronze),
            path=bronze_table(settings),
            checkpoint=settings.lake.checkpoint("unchained"),
            query_name="unchained",
            trigger=StreamTrigger(available_now=True),
            partition_by=BRONZE_PARTITIONS,
        )
        return runs.finish(UNCHAINED, query)

    return run


# Phases of `durationMs` in a query's progress, grouped: the Spark job that reads Kafka
# and writes the sink (Delta commits its log inside it too), and the bookkeeping around it.
JOB_PHASES = ("addBatch",)
BOOKKEEPING_PHASES = ("latestOffset", "getBatch", "queryPlanning", "walCommit", "commitOffsets")


def where_time_goes(phases: list[dict[str, int]], seconds: list[float]) -> dict[str, float]:
    """Median seconds per repetition: the job, offsets/checkpoint bookkeeping, the rest."""

    def total(run: dict[str, int], names: tuple[str, ...]) -> float:
        return sum(run.get(name, 0) for name in names) / 1000

    return {
        "job (read + write, addBatch)": median(total(p, JOB_PHASES) for p in phases),
        "offsets and checkpoint": median(total(p, BOOKKEEPING_PHASES) for p in phases),
        "query start and stop": median(
            s - p.get("triggerExecution", 0) / 1000 for p, s in zip(phases, seconds, strict=True)
        ),
    }


def main() -> int:
    args = parse_args(__doc__)
    events = 20_000 if args.quick else 1_000_000
    repetitions = args.repetitions or (1 if args.quick else 5)
    # The JVM keeps getting faster over the first rounds: two warm-ups in full mode.
    # Quick mode skips them: it is a smoke test, and every query costs seconds.
    warmup = (0 if args.quick else 2) if args.warmup is None else args.warmup

    with workspace("ingest") as (tmp, settings):
        print(f"producing {events:,} events ...", flush=True)
        records, produce_rate = fill_topics(settings, events)
        print(f"  {records:,} records in Kafka ({produce_rate:,.0f} events/s)")
        print("starting Spark ...", flush=True)
        spark = build_spark(settings)
        try:
            runs = Runs(settings, tmp, records)
            cases = [
                Case(BARE, bare_read(spark, runs), runs.fresh),
                Case(BRONZE, bronze_ingest(spark, runs), runs.fresh),
                Case(UNCHAINED, unchained_ingest(spark, runs), runs.fresh),
            ]
            print(f"{warmup} warm-up + {repetitions} rounds")
            results = run_alternating(cases, repetitions, warmup)
        finally:
            spark.stop()
        master = settings.spark.master

    # The harness keeps the timed rounds only; phase timings were kept for all.
    phases = {label: runs.phases[label][warmup:] for label in runs.phases}
    breakdown = {label: where_time_goes(phases[label], results[label].seconds) for label in phases}
    ratios = paired_ratios(results, BRONZE, BARE)
    chain_ratios = paired_ratios(results, BRONZE, UNCHAINED)
    notes = [
        f"Bronze ingest / bare read: **{results[BRONZE].median_rate / results[BARE].median_rate:.2f}×** "
        f"(ratio of medians; per round {min(ratios):.2f}–{max(ratios):.2f}×).",
        f"With hashes and chain / without: **{results[BRONZE].median_rate / results[UNCHAINED].median_rate:.2f}×** "
        f"(per round {min(chain_ratios):.2f}–{max(chain_ratios):.2f}×).",
        "",
        "Where the time goes (median per repetition, from the queries' progress reports):",
        "",
        f"- {_breakdown_line(BRONZE, breakdown[BRONZE], results[BRONZE])}",
        f"- {_breakdown_line(UNCHAINED, breakdown[UNCHAINED], results[UNCHAINED])}",
        f"- {_breakdown_line(BARE, breakdown[BARE], results[BARE])}",
    ]
    publish_results(
        "ingest",
        "Kafka → bronze ingest (`bench/bench_ingest.py`)",
        "Events per second of the ingest query (`jobs.ingest_events.start`, hashed and chained) and of "
        "the same rows without hashes (Delta streaming sink) against "
        "the baseline of Spark's bare Kafka read of the same six topics into the `noop` sink; "
        f"same records, same session (`{master}`), alternating, `availableNow`, a fresh "
        "checkpoint each repetition.",
        results,
        baseline=BARE,
        params={"events": records, "repetitions": repetitions, "warmup": warmup},
        quick=args.quick,
        notes=notes,
        extra={
            "produce_events_per_second": produce_rate,
            "kafka_partitions": sum(t.partitions for t in settings.kafka.topics.values()),
            "spark_master": master,
            "median_seconds_by_phase": breakdown,
            "phases_ms_per_run": phases,
        },
    )
    return 0


def _breakdown_line(label: str, breakdown: dict[str, float], result: CaseResult) -> str:
    parts = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in breakdown.items())
    return f"{label}, median {median(result.seconds):.1f} s: {parts}."


if __name__ == "__main__":
    sys.exit(main())
