"""`replay`: the event store into a Kafka replica (same partitions, order, keys, values and
timestamps), into a new Delta table, and into a view that had no state, which comes out
equal to the one maintained live."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.datasets import gold_table
from retailstream.io.delta import read_table
from retailstream.io.kafka_source import read_kafka_batch
from retailstream.jobs import replay_events
from support import copied_lake

RECORD = ["partition", "key", "value", "kafka_timestamp"]


def test_a_topic_replica_keeps_partitions_order_and_timestamps(
    spark: SparkSession, sample_lake: Settings, settings: Settings, tmp_path: Path
) -> None:
    records = replay_events.chosen_records(spark, sample_lake, ["shop.ratings"])
    prefix = f"replica{uuid.uuid4().hex[:6]}."
    produced = replay_events.to_topics(records, settings.kafka.bootstrap, prefix)
    assert produced == {f"{prefix}shop.ratings": records.count()}

    replica = read_kafka_batch(spark, settings.kafka, [f"{prefix}shop.ratings"]).select(
        "partition", "offset", "key", "value", F.col("timestamp").alias("kafka_timestamp")
    )
    # Same records in the same order per partition: offsets renumbered from 0, nothing else.
    source = records.orderBy("partition", "offset").select(*RECORD).collect()
    copied = replica.orderBy("partition", "offset").select(*RECORD).collect()
    assert copied == source
    with pytest.raises(UserError, match="exist already"):
        replay_events.to_topics(records, settings.kafka.bootstrap, prefix)


def test_a_time_slice_goes_to_a_new_table(
    spark: SparkSession, sample_lake: Settings, tmp_path: Path
) -> None:
    stamps = (
        replay_events.chosen_records(spark, sample_lake)
        .agg(F.min("kafka_timestamp"), F.max("kafka_timestamp"))
        .first()
    )
    assert stamps is not None
    first, last = stamps[0], stamps[1]
    middle = first + (last - first) / 2
    since = middle.replace(tzinfo=None)
    wanted = replay_events.chosen_records(spark, sample_lake, since=since)
    path = tmp_path / "slice"
    cfg = replay_events.ReplayRun(sample_lake, to_table=str(path), since=since)
    assert replay_events.run(spark, cfg) == 0
    sliced = read_table(spark, path)
    assert sliced.count() == wanted.count() > 0
    assert sliced.agg(F.min("kafka_timestamp")).first()[0] >= since  # type: ignore[index]
    with pytest.raises(UserError, match="holds a Delta table already"):
        replay_events.run(spark, cfg)


def test_a_view_without_state_is_built_from_the_stored_events(
    spark: SparkSession, sample_lake: Settings, tmp_path: Path
) -> None:
    lake = copied_lake(sample_lake, tmp_path)
    live = (
        read_table(spark, gold_table(lake, "sales_by_region"))
        .orderBy("window_start", "store_id")
        .collect()
    )
    # As if sales_by_region had been defined only now, after the gold query ran: no table.
    shutil.rmtree(gold_table(lake, "sales_by_region"))
    assert replay_events.to_new_view(spark, lake, "sales_by_region") == len(live)
    rebuilt = read_table(spark, gold_table(lake, "sales_by_region")).orderBy(
        "window_start", "store_id"
    )
    assert rebuilt.collect() == live
    with pytest.raises(UserError, match="exists already"):
        replay_events.to_new_view(spark, lake, "sales_by_region")
