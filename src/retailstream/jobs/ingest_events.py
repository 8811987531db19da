"""Ingest: every event topic in Kafka -> the bronze event store (Delta, append-only).

Reads: the topics declared under `kafka.topics`, from the earliest offsets on
the first run and from the checkpoint after that.
Writes: `<lake>/bronze_events`, one row per Kafka record (topic, partition,
offset, raw key and value, Kafka timestamp, ingest time), partitioned by topic
and Kafka date; checkpoint `<lake>/_checkpoints/ingest_events`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.io.delta import StreamTrigger, append_stream
from retailstream.io.kafka_source import read_kafka_stream
from retailstream.jobs.launcher import launch
from retailstream.transforms.bronze import BRONZE_PARTITIONS, to_bronze

QUERY_NAME = "ingest_events"
BRONZE_TABLE = "bronze_events"


def start(spark: SparkSession, settings: Settings, trigger: StreamTrigger) -> StreamingQuery:
    """Start the ingest query and return it (the caller waits or stops it)."""
    records = read_kafka_stream(spark, settings.kafka, sorted(settings.kafka.topics))
    return append_stream(
        records.transform(to_bronze),
        path=settings.lake.table(BRONZE_TABLE),
        checkpoint=settings.lake.checkpoint(QUERY_NAME),
        query_name=QUERY_NAME,
        trigger=trigger,
        partition_by=BRONZE_PARTITIONS,
    )


def run(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    from retailstream.kafka.clients import require_broker

    require_broker(settings.kafka.bootstrap)
    query = start(spark, settings, StreamTrigger(available_now=args.available_now))
    query.awaitTermination()
    return 0


def _flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--available-now",
        action="store_true",
        help="ingest what Kafka holds now, then stop (default: run until interrupted)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return launch(__doc__.splitlines()[0], run, argv, _flags, prog="ingest_events")
