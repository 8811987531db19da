"""Demo: broker -> world -> generated events -> bronze, printing each step.

Reads/writes: starts the local broker when config uses it and it is not
running, writes the reference data (`world init`), publishes generated events
at a steady rate (`produce`), ingests everything into `<lake>/bronze_events`
(available-now) and prints what bronze holds per topic.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from pyspark.sql import functions as F

from retailstream.config import Settings, load_settings
from retailstream.io.delta import StreamTrigger, read_table
from retailstream.jars import classpath
from retailstream.jobs import ingest_events, init_world, produce_events
from retailstream.jobs.launcher import launch_without_spark
from retailstream.kafka.broker import LocalBroker


def _start_local_broker(settings: Settings) -> LocalBroker | None:
    """Start the local broker if config uses it and it is down; return it if we started it."""
    if not settings.kafka.local_broker.enabled or settings.kafka.bootstrap_servers:
        print(f"[1/5] using the Kafka cluster at {settings.kafka.bootstrap}")
        return None
    local = LocalBroker(settings.kafka.local_broker, classpath(settings.home, "kafka-broker"))
    if local.pid() is not None:
        print(f"[1/5] Kafka broker already running on {local.bootstrap}")
        return None
    seconds = local.start()
    print(f"[1/5] Kafka broker started on {local.bootstrap} in {seconds:.1f}s")
    return local


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from retailstream.session import build_spark

    broker = _start_local_broker(settings)
    try:
        started = time.monotonic()
        spark = build_spark(settings)
        counts = init_world.write_world(spark, settings, settings.world.seed, settings.world.scale)
        print(
            f"[2/5] Spark {spark.version} up and the world written in "
            f"{time.monotonic() - started:.1f}s: {counts['products']} products, "
            f"{counts['stores']} stores, {counts['customers']} customers"
        )
        produce_args = argparse.Namespace(
            events=args.events, duration=None, rate=args.rate, seed=int(time.time()),
            start=None, sim_seconds_per_event=None, quiet=True,
        )  # fmt: skip
        report = produce_events.produce(settings, produce_args)
        print(f"[3/5] published {report.events} events at {report.rate:,.0f} events/s")
        ingest_started = time.monotonic()
        query = ingest_events.start(spark, settings, StreamTrigger(available_now=True))
        query.awaitTermination()
        print(f"[4/5] ingested into bronze in {time.monotonic() - ingest_started:.1f}s")
        bronze_path = settings.lake.table(ingest_events.BRONZE_TABLE)
        per_topic = read_table(spark, bronze_path).groupBy("topic").agg(F.count("*").alias("n"))
        print(f"[5/5] the bronze event store at {bronze_path} holds:")
        for row in per_topic.orderBy("topic").collect():
            print(f"        {row['topic']:<26} {row['n']:>8} records")
    finally:
        if broker is not None and not args.keep_broker:
            broker.stop()
            print(
                f"Kafka broker stopped (its data stays in {settings.kafka.local_broker.data_dir})"
            )
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=20_000, help="events to publish")
    parser.add_argument("--rate", type=float, default=10_000, help="events per second")
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running")


def main(argv: Sequence[str] | None = None) -> int:
    return launch_without_spark(
        __doc__.splitlines()[0],
        lambda args: run_demo(load_settings(args.env, args.overrides), args),
        argv,
        add_flags,
        prog="demo",
    )
