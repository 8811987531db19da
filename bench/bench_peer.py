"""Peer comparison: one windowed sales aggregation, in Spark and in plain Python with pandas.

The aggregation is the figures of the `sales_by_region` view: per store and
one-minute event-time window, revenue (sum of order totals), orders and units
(sum of line quantities); online orders count under store `online`. One
throwaway local broker is filled once with the generator's order events (no
defects, so neither side needs validation or deduplication and both answer
the same question). Then, alternately in one run, each reads every record of
`shop.orders` from the earliest offsets:

- plain Python, the baseline: one consumer process per core Spark has (a
  warm spawned pool), each a confluent-kafka consumer assigned its share of
  the partitions (dealt round robin; the topic has 6, so 2 or 3 cores split
  it evenly), polling batches of records until it reaches the end offsets it
  read at the start; each batch is parsed with `json.loads` into a pandas
  frame, floored to the minute, grouped and summed; the processes' partial
  sums are added up and written to a Parquet file. Also timed: the same peer
  in one process (the way a user without Spark would first write it), and
  with orjson as its parser (what a faster parser would lift it to). Each
  process reports its time per phase (consume, parse, aggregate).
- Spark: a Structured Streaming query (the project's Kafka source options,
  `from_json` with the order schema, `window()`, `groupBy().agg()`) written in
  complete mode to a Delta table, `availableNow`, a fresh checkpoint and table
  each repetition, in one SparkSession started before the rounds.

Time is wall time of the whole read-aggregate-write; events/s = order records
/ seconds. After the rounds every peer's answer is compared with Spark's group by group
(revenue to the cent, orders and units exactly); a difference fails the run.

    .venv/bin/python bench/bench_peer.py [--quick]
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
from confluent_kafka import Consumer, TopicPartition
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
from pyspark.sql import types as T

from retailstream.config import Settings, TopicSettings
from retailstream.io.kafka_source import read_kafka_stream
from retailstream.kafka.clients import consumer, flush_or_fail, producer
from retailstream.kafka.topics import create_topics
from retailstream.session import build_spark
from retailstream.world import EventGenerator, build_world
from retailstream.world.defects import DefectRates

TOPIC = "shop.orders"
ONLINE = "online"
SPARK = "Spark Structured Streaming (Delta sink)"
GROUP_KEYS = ["window_start", "store_id"]
PHASES = ("consume", "parse", "aggregate")
# Partitions of the benchmark's order topic: a multiple of 2 and 3 cores, so that
# neither side's work splits unevenly over the cores (the project's topics have 3).
ORDER_PARTITIONS = 6


def peer_label(processes: int, fast_json: bool = False) -> str:
    kind = "consumer" if processes == 1 else "consumers"
    parser = ", orjson" if fast_json else ""
    return f"Python {kind} + pandas ({processes} process{'es' if processes > 1 else ''}{parser})"


def fill_orders(settings: Settings, orders: int) -> int:
    """Produce the generator's order records until `orders` are in Kafka; return how many."""
    bootstrap = settings.kafka.bootstrap
    create_topics(bootstrap, {TOPIC: TopicSettings(partitions=ORDER_PARTITIONS)})
    generator = EventGenerator(
        build_world(settings.world.seed, settings.world.scale),
        settings.world.seed,
        datetime(2025, 3, 3, 8, 0, tzinfo=UTC),
        sim_seconds_per_event=0.05,  # ~7k orders per simulated hour
        defect_rates=DefectRates.none(),
    )
    client = producer(bootstrap)
    sent = 0
    while sent < orders:
        for record in generator.next_batch(50_000).records:
            if record.topic == TOPIC and sent < orders:
                client.produce(record.topic, key=record.key, value=record.value)
                client.poll(0)
                sent += 1
    flush_or_fail(client)
    return sent


# ---------------------------------------------------------------------------
# The baseline: plain consumer loops with pandas, one process per core

Loads = Callable[[bytes], Any]


@dataclass
class Partial:
    """What one consumer process summed from its partitions, and where its time went."""

    sums: pd.DataFrame
    records: int
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase


def _frame(values: list[bytes], loads: Loads) -> pd.DataFrame:
    """One polled batch as rows of (window_start, store_id, total, units)."""
    events = [loads(v) for v in values]
    return pd.DataFrame(
        {
            "window_start": pd.to_datetime(
                [e["event_time"] for e in events], utc=True, format="ISO8601"
            ).floor("min"),
            "store_id": [e.get("store_id") or ONLINE for e in events],
            "total": [e["total"] for e in events],
            "units": [sum(line.get("quantity") or 0 for line in e["lines"]) for e in events],
        }
    )


def _summed(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.groupby(GROUP_KEYS, as_index=False).agg(
        revenue=("revenue", "sum"), orders=("orders", "sum"), units=("units", "sum")
    )


def partition_sums(bootstrap: str, partitions: Sequence[int], fast_json: bool) -> Partial:
    """Read every record of `partitions` of TOPIC and sum them per store and minute.

    Runs in a worker process: a consumer of its own, assigned (no group
    rebalancing) to its share of the partitions, reading up to the end offsets
    it finds at the start. `fast_json` parses with orjson instead of `json`.
    """
    loads: Loads = orjson.loads if fast_json else json.loads
    client: Consumer = consumer(bootstrap, f"bench-peer-{time.monotonic_ns()}")
    phases = dict.fromkeys(PHASES, 0.0)
    try:
        ends = {
            p: client.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
            for p in partitions
        }
        client.assign([TopicPartition(TOPIC, p, 0) for p in partitions])
        remaining = {p for p, end in ends.items() if end > 0}
        partials: list[pd.DataFrame] = []
        records = 0
        while remaining:
            started = time.perf_counter()
            messages = client.consume(num_messages=10_000, timeout=1.0)
            values = []
            for message in messages:
                if message.error():
                    raise RuntimeError(f"consumer: {message.error()}")
                value, offset, partition = message.value(), message.offset(), message.partition()
                # A record read without error has all three.
                assert value is not None and offset is not None and partition is not None
                values.append(value)
                if offset + 1 >= ends[partition]:
                    remaining.discard(partition)
            polled = time.perf_counter()
            phases["consume"] += polled - started
            if not values:
                continue
            records += len(values)
            batch = _frame(values, loads)
            parsed = time.perf_counter()
            phases["parse"] += parsed - polled
            partials.append(
                batch.groupby(GROUP_KEYS, as_index=False).agg(
                    revenue=("total", "sum"), orders=("total", "size"), units=("units", "sum")
                )
            )
            phases["aggregate"] += time.perf_counter() - parsed
        started = time.perf_counter()
        sums = _summed(pd.concat(partials, ignore_index=True)) if partials else pd.DataFrame()
        phases["aggregate"] += time.perf_counter() - started
        return Partial(sums, records, phases)
    finally:
        client.close()


def shares(partitions: Sequence[int], processes: int) -> list[list[int]]:
    """`partitions` dealt round robin to `processes` consumers (none left empty)."""
    dealt = [list(partitions[i::processes]) for i in range(processes)]
    return [share for share in dealt if share]


class PythonPeer:
    """The plain-Python aggregation as a benchmark case: `processes` consumer processes
    (a warm spawned pool; a single consumer runs in this process instead), their
    partial sums merged here and written to Parquet at `out`."""

    def __init__(self, bootstrap: str, out: Path, processes: int, fast_json: bool) -> None:
        self.bootstrap = bootstrap
        self.out = out
        self.processes = processes
        self.fast_json = fast_json
        self.phases: list[dict[str, float]] = []  # per round, summed over processes
        self.pool = (
            ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
            if processes > 1
            else None
        )

    def run(self) -> int:
        client = consumer(self.bootstrap, f"bench-peer-{time.monotonic_ns()}")
        try:
            partitions = sorted(client.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions)
        finally:
            client.close()
        dealt = shares(partitions, self.processes)
        if self.pool is None:
            partials = [partition_sums(self.bootstrap, dealt[0], self.fast_json)]
        else:
            futures = [
                self.pool.submit(partition_sums, self.bootstrap, share, self.fast_json)
                for share in dealt
            ]
            partials = [f.result() for f in futures]
        started = time.perf_counter()
        _summed(pd.concat([p.sums for p in partials], ignore_index=True)).to_parquet(
            self.out, index=False
        )
        phases = {k: sum(p.phases[k] for p in partials) for k in PHASES}
        phases["merge"] = time.perf_counter() - started
        self.phases.append(phases)
        return sum(p.records for p in partials)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------
# Spark: the same aggregation as a streaming query

ORDER_SCHEMA = T.StructType(
    [
        T.StructField("event_time", T.TimestampType()),
        T.StructField("store_id", T.StringType()),
        T.StructField("total", T.DoubleType()),
        T.StructField(
            "lines",
            T.ArrayType(T.StructType([T.StructField("quantity", T.IntegerType())])),
        ),
    ]
)


def spark_sales(records: DataFrame) -> DataFrame:
    """Kafka records of TOPIC -> revenue, orders and units per one-minute window and store."""
    order = F.from_json(F.col("value").cast("string"), ORDER_SCHEMA)
    units = F.aggregate(
        "o.lines",
        F.lit(0).cast("long"),
        lambda acc, line: acc + F.coalesce(line["quantity"], F.lit(0)),
    )
    orders = records.select(order.alias("o")).select(
        "o.event_time",
        F.coalesce("o.store_id", F.lit(ONLINE)).alias("store_id"),
        "o.total",
        units.alias("units"),
    )
    return (
        orders.groupBy(F.window("event_time", "1 minute").alias("w"), "store_id")
        .agg(
            F.sum("total").alias("revenue"),
            F.count("*").alias("orders"),
            F.sum("units").alias("units"),
        )
        .select(F.col("w.start").alias("window_start"), "store_id", "revenue", "orders", "units")
    )


def spark_aggregation(spark: SparkSession, settings: Settings, tmp: Path) -> Callable[[], int]:
    runs = count(1)

    def run() -> int:
        n = next(runs)
        target = tmp / f"spark-run-{n}"
        query = (
            spark_sales(read_kafka_stream(spark, settings.kafka, [TOPIC]))
            .writeStream.format("delta")
            .outputMode("complete")
            .trigger(availableNow=True)
            .option("checkpointLocation", str(target / "_checkpoint"))
            .start(str(target / "sales"))
        )
        query.awaitTermination()
        if query.exception() is not None:
            raise RuntimeError(f"Spark query failed: {query.exception()}")
        return sum(p["numInputRows"] for p in query.recentProgress)

    return run


# ---------------------------------------------------------------------------
# Both answers must agree


def compare(spark: SparkSession, tmp: Path, python_out: Path) -> int:
    """Groups in both answers (Spark's last and the peer's at `python_out`); raises if
    any group's figures differ."""
    spark_dirs = sorted(tmp.glob("spark-run-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    theirs = spark.read.format("delta").load(str(spark_dirs[-1] / "sales")).toPandas()
    theirs["window_start"] = (
        pd.to_datetime(theirs["window_start"])
        .dt.tz_localize(spark.conf.get("spark.sql.session.timeZone"))
        .dt.tz_convert("UTC")
    )
    ours = pd.read_parquet(python_out)
    both = ours.merge(
        theirs, on=GROUP_KEYS, how="outer", suffixes=("_py", "_spark"), indicator=True
    )
    lonely = both[both["_merge"] != "both"]
    if len(lonely):
        raise RuntimeError(f"{len(lonely)} groups are in one answer only, e.g. {lonely.head(3)}")
    off = both[
        ((both["revenue_py"] - both["revenue_spark"]).abs() > 0.005)
        | (both["orders_py"] != both["orders_spark"])
        | (both["units_py"] != both["units_spark"])
    ]
    if len(off):
        raise RuntimeError(f"{len(off)} groups differ, e.g. {off.head(3)}")
    return len(both)


def _percent(phases: Sequence[dict[str, float]]) -> str:
    """The peer's time per phase, summed over its rounds and processes, as shares."""
    totals = {k: sum(p[k] for p in phases) for k in phases[0]}
    whole = sum(totals.values()) or 1.0
    return ", ".join(f"{k} {100 * v / whole:.0f} %" for k, v in totals.items())


def main() -> int:
    args = parse_args(__doc__)
    orders = 3_000 if args.quick else 500_000
    repetitions = args.repetitions or (1 if args.quick else 5)
    warmup = (0 if args.quick else 1) if args.warmup is None else args.warmup

    with workspace("peer") as (tmp, settings):
        print(
            f"producing {orders:,} order events into {ORDER_PARTITIONS} partitions ...", flush=True
        )
        records = fill_orders(settings, orders)
        print("starting Spark ...", flush=True)
        spark = build_spark(settings)
        cores = spark.sparkContext.defaultParallelism
        bootstrap = settings.kafka.bootstrap
        peers = {
            peer_label(n, fast): PythonPeer(bootstrap, tmp / f"python-{n}-{fast}.parquet", n, fast)
            for n, fast in ((1, False), (cores, False), (cores, True))
        }
        baseline = peer_label(cores)
        try:

            def fresh() -> None:
                for old in tmp.glob("spark-run-*"):
                    shutil.rmtree(old, ignore_errors=True)

            cases = [
                *(Case(label, peer.run) for label, peer in peers.items()),
                Case(SPARK, spark_aggregation(spark, settings, tmp), fresh),
            ]
            print(f"{warmup} warm-up + {repetitions} rounds; Spark and the peer on {cores} cores")
            results = run_alternating(cases, repetitions, warmup)
            for label, result in results.items():
                if any(n != records for n in result.events):
                    raise RuntimeError(f"{label} read {result.events}, Kafka holds {records:,}")
            groups = {label: compare(spark, tmp, peer.out) for label, peer in peers.items()}
            master = settings.spark.master
        finally:
            spark.stop()
            for peer in peers.values():
                peer.close()

    ratio = results[SPARK].median_rate / results[baseline].median_rate
    per_round = paired_ratios(results, SPARK, baseline)
    single = results[SPARK].median_rate / results[peer_label(1)].median_rate
    lift = results[peer_label(cores, True)].median_rate / results[baseline].median_rate
    warm = peers[baseline].phases[warmup:] or peers[baseline].phases
    publish_results(
        "peer",
        "Peer comparison: windowed sales aggregation (`bench/bench_peer.py`)",
        "Order events per second of one aggregation (revenue, orders and units per store and "
        "one-minute event-time window, read from `shop.orders` from the earliest offsets, "
        "written out) as a Spark Structured Streaming query into Delta against the baseline "
        f"of plain Python consumers (confluent-kafka) aggregating with pandas into Parquet, one "
        f"process per core ({cores}, Spark `{master}`), each assigned its share of the "
        f"topic's {ORDER_PARTITIONS} partitions, their partial sums merged; also the same "
        "peer in one process and with orjson as its parser. Same records, same run, "
        "alternating.",
        results,
        baseline=baseline,
        params={"orders": records, "repetitions": repetitions, "warmup": warmup},
        quick=args.quick,
        notes=[
            f"Spark / plain Python on the same {cores} cores: **{ratio:.2f}×** (ratio of "
            f"medians; per round {min(per_round):.2f}–{max(per_round):.2f}×, median "
            f"{statistics.median(per_round):.2f}×, {len(per_round)} rounds). Against the "
            f"peer in one process: {single:.2f}×.",
            f"Where the {cores}-process peer's time goes (summed over its processes): "
            f"{_percent(warm)}. orjson as its parser: {lift:.2f}× its events/s.",
            "Every peer's answer agrees with Spark's on all "
            f"{min(groups.values()):,} store-minute groups (revenue to the cent, orders and "
            "units exactly).",
        ],
        extra={"groups": groups, "spark_master": master, "cores": cores, "phases": warm},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
