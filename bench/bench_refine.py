"""Bronze -> silver refine, with the expectation suites and without them, in one run.

One throwaway local broker is filled once with generated events (each record
stamped with the generator's emit time, as a live producer would, so that
events are not taken for hours late), `world init` writes the reference
tables and ingest copies the topics into bronze, once. Then, alternately in
one run and one SparkSession, the refine query (`jobs.refine_events.start`:
one query for every table, as `refine --available-now` runs it) drains that
bronze table:

- without expectations, the baseline: the shipped query (parse, deduplicate
  by event_id, write silver and quarantine, count the batch) with every
  suite emptied and the line-sku lookup (orders, shipments) skipped: only
  parse errors are quarantined;
- with expectations: the shipped suites of `conf/expectations/`, their
  reference value-set joins and the line-sku check of orders and shipments;
- parse and append only, the floor of refine's work: each table's values
  parsed with its contract's schema (`from_json`, one batch job per table,
  tables side by side) and appended to Delta; refine with expectations is
  aimed at 0.5x of it or better (issue 16).

Every repetition writes silver, quarantine and checkpoints into a fresh lake
whose `bronze_events` and `reference` are links to the shared ones. The
reference value sets are gathered and cached once per session, as a running refine
job holds them. Time is wall time from the query's start to its end;
events/s = bronze rows / seconds. Overhead = 1 - with / without.

    .venv/bin/python bench/bench_refine.py [--quick]
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from harness import (
    Case,
    paired_ratios,
    parse_args,
    publish_results,
    run_alternating,
    workspace,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from retailstream.config import LakeSettings, Settings
from retailstream.io import datasets
from retailstream.io.datasets import bronze_table
from retailstream.io.delta import StreamTrigger, read_table
from retailstream.jobs import ingest_events, init_world, refine_events
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics, describe_topics
from retailstream.quality import verdicts
from retailstream.quality.expectations import KnownValues
from retailstream.quality.reference_values import known_values
from retailstream.quality.suites import Suite, load_suites
from retailstream.schemas import CONTRACTS_BY_TABLE, event_fields
from retailstream.session import build_spark
from retailstream.world import EventGenerator, Scale, build_world

WITHOUT = "refine without expectations"
WITH = "refine with expectations"
PLAIN = "parse and append only"
START = datetime(2026, 5, 4, tzinfo=UTC)
SCALE: Scale = "small"
SHARED = (datasets.BRONZE, datasets.REFERENCE)


# ---------------------------------------------------------------------------
# Setup, once per run


def fill_topics(settings: Settings, events: int, seed: int) -> tuple[int, float]:
    """Produce `events` generated events, each stamped with its emit time; return
    (records in Kafka, events/s)."""
    bootstrap = settings.kafka.bootstrap
    create_topics(bootstrap, settings.kafka.topics)
    generator = EventGenerator(build_world(seed, SCALE), seed, START, sim_seconds_per_event=1.0)
    client = producer(bootstrap)
    started = time.perf_counter()
    produced = 0
    while produced < events:
        batch = generator.next_batch(min(settings.generator.batch_size, events - produced))
        for (topic, key, value), emitted in zip(batch.records, batch.emit_times_ms, strict=True):
            while True:
                try:
                    client.produce(topic, key=key, value=value, timestamp=emitted)
                    break
                except BufferError:  # the local queue is full: let it deliver
                    client.poll(0.05)
        produced += len(batch.records)
        client.poll(0)
    flush_or_fail(client)
    rate = produced / (time.perf_counter() - started)
    records = sum(t.records for t in describe_topics(bootstrap, sorted(settings.kafka.topics)))
    return records, rate


def bronze_rows_by_topic(spark: SparkSession, settings: Settings) -> dict[str, int]:
    bronze = read_table(spark, bronze_table(settings))
    return {r["topic"]: int(r["count"]) for r in bronze.groupBy("topic").count().collect()}


def gathered_references(
    spark: SparkSession, settings: Settings, suites: dict[str, Suite]
) -> KnownValues:
    """The reference value sets, gathered once (untimed), as a running refine job does."""
    references = datasets.load_references(spark, settings)
    return known_values(spark, references, suites)


# ---------------------------------------------------------------------------
# Where the time goes inside a micro-batch: the handler's writes, timed


class StepTimer:
    """Seconds spent in the refine handler's batch tally and Delta writes, per run.

    The handler persists the micro-batch and counts it first, so the tally also
    reads bronze, deduplicates, parses and validates; the writes read the cached
    rows.
    """

    def __init__(self) -> None:
        self.current: defaultdict[str, float] = defaultdict(float)

    def step(self, app_id: str) -> str:
        if app_id.endswith("_quarantine"):
            return "quarantine write"
        if app_id == refine_events.query_name("order_lines"):
            return "order_lines write"
        return "silver write"

    @contextlib.contextmanager
    def installed(self, skip_line_skus: bool) -> Iterator[None]:
        """Wrap the handler's writes with timers; with `skip_line_skus`, make the
        line-sku lookup of orders and shipments a no-op (the parsed null stays)."""
        modules = {"append_once": refine_events, "tally": refine_events}
        modules["fill_unknown_line_skus"] = verdicts
        originals = {name: getattr(module, name) for name, module in modules.items()}

        def append_once(df: DataFrame, path: Path, app_id: str, version: int) -> None:
            started = time.perf_counter()
            try:
                originals["append_once"](df, path, app_id, version)
            finally:
                self.current[self.step(app_id)] += time.perf_counter() - started

        def tally(refined: DataFrame) -> dict[str, dict[str, object]]:
            started = time.perf_counter()
            try:
                return originals["tally"](refined)
            finally:
                self.current["tally (+ read, dedup, parse, validate)"] += (
                    time.perf_counter() - started
                )

        refine_events.append_once = append_once
        refine_events.tally = tally
        if skip_line_skus:
            verdicts.fill_unknown_line_skus = lambda df, skus: df
        try:
            yield
        finally:
            for name, original in originals.items():
                setattr(modules[name], name, original)


# ---------------------------------------------------------------------------
# The repetitions


class Runs:
    """Fresh lake roots per repetition (bronze and reference linked), and what each run saw."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        tmp: Path,
        bronze_rows: dict[str, int],
        known: KnownValues,
    ) -> None:
        self.spark = spark
        self.base = settings
        self.tmp = tmp
        self.bronze_rows = bronze_rows
        self.known = known
        self.count = 0
        self.current = settings
        self.timer = StepTimer()
        self.details: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def fresh(self) -> None:
        """Untimed: drop the previous repetition's lake, link a new one to bronze and reference."""
        if self.count:
            shutil.rmtree(self.current.lake.root, ignore_errors=True)  # unlinks, never follows
        self.count += 1
        root = self.tmp / f"lake-{self.count}"
        root.mkdir()
        for name in SHARED:
            (root / name).symlink_to(self.base.lake.table(name), target_is_directory=True)
        self.current = self.base.model_copy(update={"lake": LakeSettings(root=root)})

    def case(self, label: str, suites: dict[str, Suite], skip_line_skus: bool) -> Callable[[], int]:
        def run() -> int:
            settings = self.current
            self.timer.current = defaultdict(float)
            with self.timer.installed(skip_line_skus):
                run = self.refine_all(settings, suites)
            self.details[label].append({"steps": dict(self.timer.current), **run})
            return int(run["rows_in"])

        return run

    def parse_and_append(self) -> int:
        """The floor of refine's work: each table's values parsed with its contract's
        schema (`from_json`) and appended to a Delta table, tables side by side, in
        one batch job each; no deduplication, no checks, no quarantine."""
        bronze = read_table(self.spark, bronze_table(self.base))

        def append(table: str) -> None:
            contract = CONTRACTS_BY_TABLE[table]
            schema = StructType(event_fields(contract))
            events = F.from_json(F.col("value").cast("string"), schema)
            rows = bronze.where(F.col("topic") == contract.topic).select(events.alias("e"))
            target = self.current.lake.root / "parsed" / table
            rows.select("e.*").write.format("delta").mode("append").save(str(target))

        tables = self.base.refine.tables
        with ThreadPoolExecutor(max_workers=len(tables)) as pool:
            list(pool.map(append, tables))
        return sum(self.bronze_rows.values())

    def refine_all(self, settings: Settings, suites: dict[str, Suite]) -> dict[str, Any]:
        counts = refine_events.BatchCounts()
        started = time.perf_counter()
        query = refine_events.start(
            self.spark, settings, StreamTrigger(available_now=True), self.known, suites, counts
        )
        query.awaitTermination()
        seconds = time.perf_counter() - started
        if query.exception() is not None:
            raise RuntimeError(f"refine failed: {query.exception()}")
        progress = query.recentProgress
        rows_in = sum(int(p["numInputRows"]) for p in progress)
        # Each branch of the query reads its own topic's rows of the batch.
        if rows_in != sum(self.bronze_rows.values()):
            raise RuntimeError(
                f"refine read {rows_in:,} rows, bronze holds {sum(self.bronze_rows.values()):,}"
            )
        phases: Counter[str] = Counter()
        tables: dict[str, Counter[str]] = defaultdict(Counter)
        for p in progress:
            phases.update(p["durationMs"])
            counted_tables: dict[str, dict[str, Any]] = counts.pop(int(p["batchId"])) or {}
            for table, counted in counted_tables.items():
                tables[table].update(
                    valid=int(counted["valid"]), quarantined=int(counted["quarantined"])
                )
        return {
            "seconds": seconds,
            "rows_in": rows_in,
            "batches": len(progress),
            # A stateful query runs a no-data batch after the last data batch to move
            # the watermark on; foreachBatch calls the handler for it too.
            "batch_rows_and_ms": [
                (int(p["numInputRows"]), int(p["durationMs"].get("addBatch", 0))) for p in progress
            ],
            "tables": {t: dict(c) for t, c in tables.items()},
            "duration_ms": dict(phases),
        }


# ---------------------------------------------------------------------------
# Summaries


def median_empty_batches(details: list[dict[str, Any]]) -> float:
    """Median seconds per repetition in batches that read no rows (addBatch)."""
    return median(
        sum(ms for rows, ms in d["batch_rows_and_ms"] if not rows) / 1000 for d in details
    )


def median_steps(details: list[dict[str, Any]], seconds: list[float]) -> dict[str, float]:
    """Median seconds per repetition in each handler step (summed over the threads
    that refine a batch's tables side by side, so they overlap and may add up to more
    than the batch), in the batches, and outside them (start, planning, offsets, stop)."""
    steps: dict[str, list[float]] = defaultdict(list)
    for d, total in zip(details, seconds, strict=True):
        batch = d["duration_ms"].get("addBatch", 0) / 1000
        for name in sorted({s for x in details for s in x["steps"]}):
            steps[name].append(d["steps"].get(name, 0.0))
        steps["the batches, wall time"].append(batch)
        steps["outside the batches (start, plan, offsets, stop)"].append(total - batch)
    return {name: median(values) for name, values in steps.items()}


def main() -> int:
    args = parse_args(__doc__)
    events = 10_000 if args.quick else 300_000
    repetitions = args.repetitions or (1 if args.quick else 3)
    # Quick mode is a smoke test: no warm-up, one round (each query costs seconds).
    warmup = (0 if args.quick else 1) if args.warmup is None else args.warmup
    began = time.perf_counter()

    with workspace("refine") as (tmp, settings):
        seed = settings.world.seed
        print(f"producing {events:,} events ...", flush=True)
        records, produce_rate = fill_topics(settings, events, seed)
        print(f"  {records:,} records in Kafka ({produce_rate:,.0f} events/s)")
        print("starting Spark ...", flush=True)
        spark = build_spark(settings)
        try:
            started = time.perf_counter()
            init_world.write_world(spark, settings, seed, SCALE)
            print(f"world (seed {seed}, {SCALE}) in {time.perf_counter() - started:.1f} s")
            started = time.perf_counter()
            ingest_events.run(spark, StreamRun(settings, available_now=True))
            bronze_rows = bronze_rows_by_topic(spark, settings)
            bronze_total = sum(bronze_rows.values())
            print(f"bronze: {bronze_total:,} rows in {time.perf_counter() - started:.1f} s")
            if bronze_total != records:
                raise RuntimeError(f"bronze holds {bronze_total:,} rows, Kafka {records:,}")
            shipped = load_suites(settings.refine.expectations_dir)
            missing = sorted(set(settings.refine.tables) - set(shipped))
            if missing:
                raise RuntimeError(f"no suite for {', '.join(missing)}")
            empty = {t: dataclasses.replace(s, expectations=()) for t, s in shipped.items()}
            known = gathered_references(spark, settings, shipped)
            runs = Runs(spark, settings, tmp, bronze_rows, known)
            cases = [
                Case(WITHOUT, runs.case(WITHOUT, empty, skip_line_skus=True), runs.fresh),
                Case(WITH, runs.case(WITH, shipped, skip_line_skus=False), runs.fresh),
                Case(PLAIN, runs.parse_and_append, runs.fresh),
            ]
            print(f"{warmup} warm-up + {repetitions} rounds")
            results = run_alternating(cases, repetitions, warmup)
        finally:
            spark.stop()
        master = settings.spark.master
        tables = settings.refine.tables
        shuffle_partitions = settings.spark.shuffle_partitions

    details = {label: runs.details[label][warmup:] for label in (WITHOUT, WITH)}
    steps = {label: median_steps(details[label], results[label].seconds) for label in details}
    empty_batches = {label: median_empty_batches(details[label]) for label in details}
    ratio = results[WITH].median_rate / results[WITHOUT].median_rate
    ratios = paired_ratios(results, WITH, WITHOUT)
    floor = results[WITH].median_rate / results[PLAIN].median_rate
    floor_ratios = paired_ratios(results, WITH, PLAIN)
    last = details[WITH][-1]["tables"]
    quarantined = {t: last.get(t, {}).get("quarantined", 0) for t in tables}
    baseline = details[WITHOUT][-1]["tables"]
    baseline_quarantined = {t: baseline.get(t, {}).get("quarantined", 0) for t in tables}
    expectation_count = sum(len(shipped[t].expectations) for t in tables)
    notes = [
        f"Overhead of the expectations: **{1 - ratio:.1%}** (1 − with / without, ratio of "
        f"medians; per round {1 - max(ratios):.1%} – {1 - min(ratios):.1%}); aim: under 15 %.",
        "",
        f"Refine with expectations / parse and append only: **{floor:.2f}×** (per round "
        f"{min(floor_ratios):.2f}–{max(floor_ratios):.2f}×); aim: at least 0.5×. The floor "
        "parses each table's values with its contract's schema (`from_json`) and appends "
        "them to Delta, tables side by side, one batch job each.",
        "",
        "Rows and reference value sets per table: "
        + "; ".join(
            f"{t} {bronze_rows.get(CONTRACTS_BY_TABLE[t].topic, 0):,} "
            f"({len(shipped[t].value_set_sources())}"
            + (" + line skus" if CONTRACTS_BY_TABLE[t].line_fields else "")
            + ")"
            for t in tables
        )
        + ".",
        "",
        "The query runs its data batches, then a no-data batch (it moves the deduplication "
        "watermark on), which still calls the handler: it took "
        + " and ".join(
            f"{empty_batches[label]:.1f} s {'without' if label == WITHOUT else 'with'}"
            for label in (WITHOUT, WITH)
        )
        + " per repetition (median).",
        "",
        "Where the time goes (median seconds per repetition; the tables of a batch are "
        "written side by side, so their writes are summed over threads; the handler persists "
        "each micro-batch and counts it first, so the tally also reads, deduplicates, parses "
        "and validates it):",
        "",
        *(
            f"- {label}: "
            + ", ".join(f"{name} {secs:.1f}" for name, secs in steps[label].items())
            + "."
            for label in (WITHOUT, WITH)
        ),
        "",
        f"Rows quarantined: {sum(quarantined.values()):,} of {bronze_total:,} with the "
        f"{expectation_count} expectations, {sum(baseline_quarantined.values()):,} (parse "
        "errors only) without.",
    ]
    elapsed = time.perf_counter() - began
    print(f"\nwhole run {elapsed / 60:.1f} min")
    publish_results(
        "refine",
        "Bronze → silver refine (`bench/bench_refine.py`)",
        "Events per second of the refine query of all six tables "
        "(`jobs.refine_events.start`, one query, `availableNow`) with the shipped "
        "expectation suites, reference value-set joins and line-sku check, against the "
        "baseline of the "
        "same query with empty suites (parse, dedup, silver and quarantine writes), and "
        "of parsing and appending alone (the floor of refine's work); same "
        f"bronze table, same session (`{master}`), alternating, a fresh silver, quarantine "
        "and checkpoints each repetition. events/s = bronze rows / wall seconds of the query.",
        results,
        baseline=WITHOUT,
        params={
            "events": bronze_total,
            "repetitions": repetitions,
            "warmup": warmup,
            "world": SCALE,
        },
        quick=args.quick,
        notes=notes,
        extra={
            "overhead": 1 - ratio,
            "overhead_per_round": [1 - r for r in ratios],
            "with_over_parse_and_append": floor,
            "with_over_parse_and_append_per_round": floor_ratios,
            "produce_events_per_second": produce_rate,
            "bronze_rows_by_topic": bronze_rows,
            "expectations_per_table": {t: len(shipped[t].expectations) for t in tables},
            "spark_master": master,
            "shuffle_partitions": shuffle_partitions,
            "whole_run_seconds": elapsed,
            "median_seconds_by_step": steps,
            "median_seconds_in_no_data_batches": empty_batches,
            "runs": details,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
