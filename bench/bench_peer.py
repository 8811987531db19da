"""Peer comparison: one windowed sales aggregation, in Spark and in plain Python with pandas.

The aggregation is the figures of the `sales_by_region` view: per store and
one-minute event-time window, revenue (sum of order totals), orders and units
(sum of line quantities); online orders count under store `online`. One
throwaway local broker is filled once with the generator's order events (no
defects, so neither side needs validation or deduplication and both answer
the same question). Then, alternately in one run, each reads every record of
`shop.orders` from the earliest offsets:

- plain Python, the baseline: a confluent-kafka consumer assigned to every
  partition polls batches of records until it reaches the end offsets it
  read at the start; each batch is parsed with `json.loads` into a pandas
  frame, floored to the minute, grouped and summed, and the partial sums are
  added up at the end and written to a Parquet file. One process, one core:
  the way a user without Spark would write it.
- Spark: a Structured Streaming query (the project's Kafka source options,
  `from_json` with the order schema, `window()`, `groupBy().agg()`) written in
  complete mode to a Delta table, `availableNow`, a fresh checkpoint and table
  each repetition, in one SparkSession started before the rounds.

Time is wall time of the whole read-aggregate-write; events/s = order records
/ seconds. After the rounds the two answers are compared group by group
(revenue to the cent, orders and units exactly); a difference fails the run.

    .venv/bin/python bench/bench_peer.py [--quick]
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import count
from pathlib import Path

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

from retailstream.config import Settings
from retailstream.io.kafka_source import read_kafka_stream
from retailstream.kafka.clients import consumer, flush_or_fail, producer
from retailstream.kafka.topics import create_topics
from retailstream.session import build_spark
from retailstream.world import EventGenerator, build_world
from retailstream.world.defects import DefectRates

TOPIC = "shop.orders"
ONLINE = "online"
PYTHON = "Python consumer + pandas (1 process)"
SPARK = "Spark Structured Streaming (Delta sink)"
GROUP_KEYS = ["window_start", "store_id"]


def fill_orders(settings: Settings, orders: int) -> int:
    """Produce the generator's order records until `orders` are in Kafka; return how many."""
    bootstrap = settings.kafka.bootstrap
    create_topics(bootstrap, settings.kafka.topics)
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
# The baseline: a plain consumer loop with pandas


def _frame(values: list[bytes]) -> pd.DataFrame:
    """One polled batch as rows of (window_start, store_id, total, units)."""
    events = [json.loads(v) for v in values]
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


def python_aggregation(bootstrap: str, out: Path) -> int:
    """Read every record of TOPIC, aggregate with pandas, write Parquet; return records read."""
    client: Consumer = consumer(bootstrap, f"bench-peer-{time.monotonic_ns()}")
    try:
        partitions = client.list_topics(TOPIC, timeout=10).topics[TOPIC].partitions
        ends = {
            p: client.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
            for p in partitions
        }
        client.assign([TopicPartition(TOPIC, p, 0) for p in partitions])
        remaining = {p for p, end in ends.items() if end > 0}
        partials: list[pd.DataFrame] = []
        records = 0
        while remaining:
            messages = client.consume(num_messages=10_000, timeout=1.0)
            values = []
            for message in messages:
                if message.error():
                    raise RuntimeError(f"consumer: {message.error()}")
                values.append(message.value())
                if message.offset() + 1 >= ends[message.partition()]:
                    remaining.discard(message.partition())
            if not values:
                continue
            records += len(values)
            batch = _frame(values)
            partials.append(
                batch.groupby(GROUP_KEYS, as_index=False).agg(
                    revenue=("total", "sum"), orders=("total", "size"), units=("units", "sum")
                )
            )
        _summed(pd.concat(partials, ignore_index=True)).to_parquet(out, index=False)
        return records
    finally:
        client.close()


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
    """Groups in both answers; raises if any group's figures differ."""
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


def main() -> int:
    args = parse_args(__doc__)
    orders = 3_000 if args.quick else 500_000
    repetitions = args.repetitions or (1 if args.quick else 3)
    warmup = (0 if args.quick else 1) if args.warmup is None else args.warmup

    with workspace("peer") as (tmp, settings):
        print(f"producing {orders:,} order events ...", flush=True)
        records = fill_orders(settings, orders)
        print("starting Spark ...", flush=True)
        spark = build_spark(settings)
        python_out = tmp / "python-sales.parquet"
        try:

            def fresh() -> None:
                for old in tmp.glob("spark-run-*"):
                    shutil.rmtree(old, ignore_errors=True)

            cases = [
                Case(PYTHON, lambda: python_aggregation(settings.kafka.bootstrap, python_out)),
                Case(SPARK, spark_aggregation(spark, settings, tmp), fresh),
            ]
            print(f"{warmup} warm-up + {repetitions} rounds")
            results = run_alternating(cases, repetitions, warmup)
            for label, result in results.items():
                if any(n != records for n in result.events):
                    raise RuntimeError(f"{label} read {result.events}, Kafka holds {records:,}")
            groups = compare(spark, tmp, python_out)
            master = settings.spark.master
        finally:
            spark.stop()

    ratio = results[SPARK].median_rate / results[PYTHON].median_rate
    per_round = paired_ratios(results, SPARK, PYTHON)
    publish_results(
        "peer",
        "Peer comparison: windowed sales aggregation (`bench/bench_peer.py`)",
        "Order events per second of one aggregation (revenue, orders and units per store and "
        "one-minute event-time window, read from `shop.orders` from the earliest offsets, "
        "written out) as a Spark Structured Streaming query into Delta against the baseline "
        "of a plain Python consumer (confluent-kafka) aggregating with pandas into Parquet; "
        f"same records, same run, alternating (Spark `{master}`).",
        results,
        baseline=PYTHON,
        params={"orders": records, "repetitions": repetitions, "warmup": warmup},
        quick=args.quick,
        notes=[
            f"Spark / plain Python: **{ratio:.2f}×** (ratio of medians; per round "
            f"{min(per_round):.2f}–{max(per_round):.2f}×). Both answers agree on all "
            f"{groups:,} store-minute groups (revenue to the cent, orders and units exactly).",
        ],
        extra={"groups": groups, "spark_master": master},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
