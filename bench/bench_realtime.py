"""Spark's real-time mode against micro-batches, for the stateless part of the serving path.

Real-time mode (pyspark 4.2, `trigger(realTime=...)`) keeps one long-running
task per Kafka partition and hands records on as they arrive; 4.2 allows
stateless queries only, no `foreachBatch` and no Python UDFs, so its sink here
is a Python `foreach` writer. The query is the serving path's per-topic
branch without deduplication (deduplication is stateful): shop.ratings parsed
and checked against the ratings suite (`parse_events`, `mark_events`), each
checked record handed to the sink. Probes are ratings produced one every
100 ms with their send time; latency = when the sink is handed the record -
when it was sent (one machine, one clock). Unseen probes count as infinitely late.

Cases, alternating in each round, same session, same probes:
- micro-batch: `foreachBatch`, `processingTime="0 seconds"` (the serving path's trigger);
- real-time: `foreach` writer, `realTime` at `spark.sql.streaming.realTimeMode.minBatchDuration`
  lowered to 500 ms (its default, 5 s, holds a Python writer's rows up to 5 s).

    .venv/bin/python bench/bench_realtime.py [--quick] [--repetitions N]

Full: 3 rounds of 100 probes per case. `--quick`: 1 round of 10.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import Column, Plot, Table, parse_args, percentiles, publish_tables, workspace
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.io.datasets import load_references
from retailstream.io.kafka_source import read_kafka_stream
from retailstream.jobs.init_world import write_world
from retailstream.kafka.clients import producer
from retailstream.kafka.topics import create_topics
from retailstream.quality.reference_values import known_values
from retailstream.quality.suites import load_suites
from retailstream.quality.verdicts import mark_events
from retailstream.schemas import CONTRACTS_BY_TABLE
from retailstream.session import build_spark
from retailstream.transforms.bronze import to_bronze
from retailstream.transforms.parse import parse_events
from retailstream.world.records import TOPIC_RATINGS

MICRO = "micro-batch (foreachBatch, processingTime 0)"
REALTIME = "real-time mode (foreach writer, 500 ms)"
PROBE_SPACING_S = 0.1
SETTLE_S = 15.0  # after start, before the first probe: the query's first batch is slow
DRAIN_S = 10.0  # after the last probe, for the late ones


def checked_ratings(spark: SparkSession, settings: Settings) -> DataFrame:
    """shop.ratings from Kafka, parsed and checked as the serving path does (no dedup)."""
    contract = CONTRACTS_BY_TABLE["ratings"]
    suites = load_suites(settings.refine.expectations_dir)
    references = load_references(spark, settings, ["products", "customers"])
    known = known_values(spark, references, {"ratings": suites["ratings"]})
    records = read_kafka_stream(spark, settings.kafka, [TOPIC_RATINGS]).transform(to_bronze)
    marked = mark_events(parse_events(records, contract), contract, suites["ratings"], known)
    return marked.select("event_id", F.size("_reasons").alias("reasons"))


class FileSink:
    """A `foreach` writer (it runs in Python workers): appends `event_id seen_at` lines."""

    def __init__(self, path: str) -> None:
        self.path = path

    def open(self, partition_id: int, epoch_id: int) -> bool:
        self.out = open(self.path, "a")  # noqa: SIM115 - closed in close()
        return True

    def process(self, row: Any) -> None:
        self.out.write(f"{row['event_id']} {time.time()}\n")
        self.out.flush()

    def close(self, error: BaseException | None) -> None:
        self.out.close()


def start(case: str, frame: DataFrame, checkpoint: Path, seen: Path) -> StreamingQuery:
    writer = frame.writeStream.option("checkpointLocation", str(checkpoint))
    if case == REALTIME:
        return (
            writer.outputMode("update")
            .foreach(FileSink(str(seen)))
            # pyspark's overloads of `trigger` do not list `realTime` yet (4.2.0).
            .trigger(realTime="500 milliseconds")  # type: ignore[call-overload]
            .start()
        )

    def handle(batch: DataFrame, batch_id: int) -> None:
        rows = batch.toArrow().to_pylist()
        now = time.time()
        with seen.open("a") as out:
            out.writelines(f"{r['event_id']} {now}\n" for r in rows)

    return writer.foreachBatch(handle).trigger(processingTime="0 seconds").start()


def send_probes(bootstrap: str, count: int, customer: str, sku: str) -> dict[str, float]:
    """`count` valid ratings, one every PROBE_SPACING_S; their event ids and send times."""
    client = producer(bootstrap)
    sent: dict[str, float] = {}
    for _ in range(count):
        event_id = uuid.uuid4().hex
        now = datetime.now(UTC)
        value = {
            "event_id": event_id, "event_type": "item_rated", "schema_version": 1,
            "event_time": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "customer_id": customer, "sku": sku, "stars": 4,
        }  # fmt: skip
        sent[event_id] = time.time()
        client.produce(TOPIC_RATINGS, key=sku.encode(), value=json.dumps(value).encode())
        client.flush()
        time.sleep(PROBE_SPACING_S)
    return sent


def run_case(
    spark: SparkSession, settings: Settings, case: str, probes: int, tmp: Path, health: Callable
) -> list[float | None]:
    tag = uuid.uuid4().hex[:8]
    seen_path = tmp / f"seen-{tag}.txt"
    seen_path.touch()
    query = start(case, checked_ratings(spark, settings), tmp / f"ck-{tag}", seen_path)
    try:
        time.sleep(SETTLE_S)
        health(query)
        sent = send_probes(settings.kafka.bootstrap, probes, "C-0000001", "SKU-000001")
        time.sleep(DRAIN_S)
        health(query)
    finally:
        query.stop()
    arrived: dict[str, float] = {}
    for line in seen_path.read_text().splitlines():
        event_id, at = line.split()
        arrived.setdefault(event_id, float(at))
    return [arrived[e] - t if e in arrived else None for e, t in sent.items()]


def main() -> int:
    args = parse_args(__doc__)
    rounds = args.repetitions or (1 if args.quick else 3)
    probes = 10 if args.quick else 100
    began = time.perf_counter()
    latencies: dict[str, list[float | None]] = {MICRO: [], REALTIME: []}
    # Real-time mode holds a task per Kafka partition for the whole batch: slots >= partitions.
    with workspace("realtime", "spark.master=local[8]") as (tmp, settings):
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        spark = build_spark(settings)
        spark.conf.set("spark.sql.streaming.realTimeMode.minBatchDuration", "500")
        write_world(spark, settings, settings.world.seed, "small")

        def health(query: StreamingQuery) -> None:
            if query.exception() is not None:
                raise RuntimeError(f"the query failed: {query.exception()}")

        for r in range(rounds):
            for case in (MICRO, REALTIME) if r % 2 == 0 else (REALTIME, MICRO):
                got = run_case(spark, settings, case, probes, tmp, health)
                latencies[case].extend(got)
                seen = sorted(x for x in got if x is not None)
                print(f"round {r + 1} {case}: p50 {seen[len(seen) // 2] if seen else None}")
        spark.stop()
    rows = []
    for case, values in latencies.items():
        seen = [v for v in values if v is not None]
        # Unseen probes are infinitely late: they stay in the count and push the percentiles.
        padded = seen + [float("inf")] * (len(values) - len(seen))
        rows.append({"path": case, "probes": len(values), **percentiles(padded),
                     "not_seen": len(values) - len(seen)})  # fmt: skip
    table = Table(
        f"Seconds from a rating's send to its checked record reaching the sink ({rounds} "
        f"round(s) of {probes} probes per case, one every {PROBE_SPACING_S * 1000:.0f} ms)",
        [
            Column("path", "path"),
            Column("probes", "probes"),
            Column("p50", "p50 s", ".3f"),
            Column("p95", "p95 s", ".3f"),
            Column("p99", "p99 s", ".3f"),
            Column("max", "max s", ".3f"),
            Column("not_seen", "not seen"),
        ],
        rows,
        Plot(("path",), ("p50", "p95", "p99"), "seconds"),
    )
    publish_tables(
        "realtime",
        "Real-time mode against micro-batches (`bench/bench_realtime.py`)",
        __doc__.split("\n\n")[1].replace("\n", " "),
        [table],
        params={"rounds": rounds, "probes": probes, "master": "local[8]"},
        quick=args.quick,
        extra={"latencies": latencies, "whole_run_seconds": time.perf_counter() - began},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
