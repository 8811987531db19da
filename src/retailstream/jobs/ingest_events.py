"""Ingest: every event topic in Kafka -> the bronze event store (Delta, append-only).

Reads: the topics declared under `kafka.topics`, from the earliest offsets on
the first run and from the checkpoint after that.
Writes: `<lake>/bronze_events`, one row per Kafka record (topic, partition,
offset, raw key and value, Kafka timestamp, ingest time, record hash),
partitioned by topic and Kafka date; `<lake>/bronze_chain`, each batch's link
per (topic, partition) (`io.event_chain`); checkpoint
`<lake>/_checkpoints/ingest_events`.

Exactly once: Delta's sink commits each micro-batch id once, and the
checkpoint replays an unfinished batch with the same offsets after a crash.
Before starting, ingest checks that topic retention has not deleted records it
still has to read; it stops and names them unless `ingest.allow_data_loss`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery
from pyspark.sql.types import StructType

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io import datasets
from retailstream.io.checkpoints import next_kafka_offsets
from retailstream.io.datasets import bronze_table, chain_table
from retailstream.io.delta import (
    StreamTrigger,
    create_if_missing,
    foreach_batch_stream,
    has_commits,
    read_table,
)
from retailstream.io.event_chain import ChainedAppend, with_record_hash
from retailstream.io.kafka_source import read_kafka_stream
from retailstream.jobs.spec import StreamRun, stream_job
from retailstream.jobs.supervisor import run_supervised
from retailstream.kafka.broker import broker_reachable
from retailstream.kafka.clients import require_broker
from retailstream.kafka.retention import LostRange, earliest_offsets, lost_ranges
from retailstream.kafka.topics import list_topics
from retailstream.transforms.bronze import BRONZE_PARTITIONS, to_bronze
from retailstream.transforms.chain import RECORD_HASH

QUERY_NAME = datasets.INGEST_QUERY


def start(
    spark: SparkSession, settings: Settings, trigger: StreamTrigger, fail_on_data_loss: bool = True
) -> StreamingQuery:
    """Start the ingest query and return it (the caller waits or stops it)."""
    records = read_kafka_stream(
        spark, settings.kafka, sorted(settings.kafka.topics), fail_on_data_loss
    )
    bronze = bronze_table(settings)
    rows = records.transform(to_bronze)
    prepare_bronze(spark, bronze, with_record_hash(rows.schema))
    checkpoint = datasets.checkpoint(settings, QUERY_NAME)
    return foreach_batch_stream(
        rows,
        ChainedAppend(spark, bronze, chain_table(settings), checkpoint),
        checkpoint=checkpoint,
        query_name=QUERY_NAME,
        trigger=trigger,
    )


def prepare_bronze(spark: SparkSession, path: Path, schema: StructType) -> None:
    """Create the event store, partitioned, or give a store from before the record
    hashes its `record_hash` column (its older records stay unhashed)."""
    if has_commits(path):
        if RECORD_HASH not in read_table(spark, path).columns:
            spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({RECORD_HASH} BINARY)")
        return
    create_if_missing(spark, path, schema, BRONZE_PARTITIONS)


def unread_records_lost(settings: Settings) -> list[LostRange]:
    """Offset ranges the checkpoint still needs that Kafka no longer holds."""
    needed = next_kafka_offsets(datasets.checkpoint(settings, QUERY_NAME))
    if not needed:
        return []
    earliest = earliest_offsets(settings.kafka.bootstrap, {t: list(p) for t, p in needed.items()})
    return lost_ranges(needed, earliest)


def data_loss_error(lost: Sequence[LostRange]) -> UserError:
    shown = ", ".join(str(r) for r in lost[:3])
    more = f" and {len(lost) - 3} more ranges" if len(lost) > 3 else ""
    total = sum(r.count for r in lost)
    return UserError(
        f"{total} records were deleted by topic retention before ingest read them: {shown}{more}; "
        "restore them into the topics and rerun, or accept the gap with "
        "--set ingest.allow_data_loss=true"
    )


def _is_data_loss(exc: Exception) -> bool:
    text = str(exc)
    return "data may have been lost" in text or "DATA_LOSS" in text or "dataLoss" in text


# Failures a restart from the checkpoint can cure: the brokers were unreachable for a while.
_TRANSIENT_MARKERS = (
    "TimeoutException",
    "NetworkException",
    "DisconnectException",
    "Connection refused",
    "Broker transport failure",
    "LEADER_NOT_AVAILABLE",
    "NotLeaderOrFollowerException",
)


def is_transient(exc: Exception) -> bool:
    text = str(exc)
    return any(marker in text for marker in _TRANSIENT_MARKERS)


def run(spark: SparkSession, cfg: StreamRun) -> int:
    settings = cfg.settings
    require_broker(settings.kafka.bootstrap)
    missing = sorted(set(settings.kafka.topics) - set(list_topics(settings.kafka.bootstrap)))
    if missing:
        print(
            f"topics not created yet: {', '.join(missing)}; ingest reads them once they exist",
            file=sys.stderr,
        )
    allow_loss = settings.ingest.allow_data_loss
    lost = unread_records_lost(settings)
    if lost and not allow_loss:
        raise data_loss_error(lost)
    for gap in lost:
        print(f"skipping {gap.count} records lost to retention: {gap}", file=sys.stderr)

    trigger = cfg.trigger(settings.ingest.trigger_interval)

    def fatal(exc: Exception) -> Exception | None:
        if _is_data_loss(exc) and not allow_loss:
            return (
                data_loss_error(unread_records_lost(settings))
                if broker_reachable(settings.kafka.bootstrap)
                else None
            )
        return None

    run_supervised(
        lambda: start(spark, settings, trigger, fail_on_data_loss=not allow_loss),
        max_restarts=settings.ingest.max_restarts,
        backoff_s=settings.ingest.restart_backoff_s,
        fatal=fatal,
        transient=is_transient,
        wait_until_ready=lambda: broker_reachable(settings.kafka.bootstrap),
    )
    return 0


JOB = stream_job("ingest", __doc__.splitlines()[0], "ingest_events", run, "ingest what Kafka holds")
main = JOB.main
