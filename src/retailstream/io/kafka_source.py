"""Reading Kafka topics with Spark's Kafka source (streaming and batch)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from pyspark.sql import DataFrame, SparkSession

from retailstream.config import KafkaSettings

EARLIEST = -2  # Spark's offset for "the earliest" in a startingOffsets JSON


def topics_pattern(topics: Sequence[str]) -> str:
    """A regex matching exactly `topics`.

    Subscribing by pattern rather than by name lets a query start while a
    declared topic does not exist yet and pick it up once it is created;
    Spark's `subscribe` fails the query on an unknown topic.
    """
    return "^(?:" + "|".join(re.escape(t) for t in sorted(topics)) + ")$"


def kafka_source_options(
    kafka: KafkaSettings,
    topics: Sequence[str],
    fail_on_data_loss: bool = True,
    starting_offsets: str = "earliest",
) -> dict[str, str]:
    """Options shared by the streaming and the batch read of `topics`.

    `starting_offsets`: where a query without a checkpoint starts ("earliest",
    or Spark's JSON of offsets per topic and partition, as `starting_after` gives).

    `failOnDataLoss` is true unless the caller decided otherwise: offsets
    deleted by retention before they were read must stop the query, not be
    skipped silently.
    """
    options = {
        "kafka.bootstrap.servers": kafka.bootstrap,
        "subscribePattern": topics_pattern(topics),
        "startingOffsets": starting_offsets,
        "failOnDataLoss": str(fail_on_data_loss).lower(),
        "includeHeaders": "false",
        # The consumer's default 500 ms wait for a partition with nothing more to
        # fetch costs every micro-batch half a second per partition (measured in
        # bench/bench_ingest.py); the ranges Spark reads are known, so wait less.
        "kafka.fetch.max.wait.ms": "50",
    }
    options.update(kafka.source_options)
    if kafka.max_offsets_per_trigger:
        options["maxOffsetsPerTrigger"] = str(kafka.max_offsets_per_trigger)
    return options


def read_kafka_stream(
    spark: SparkSession,
    kafka: KafkaSettings,
    topics: Sequence[str],
    fail_on_data_loss: bool = True,
    starting_offsets: str = "earliest",
) -> DataFrame:
    """An unbounded DataFrame of Kafka records (key, value, topic, partition, offset, timestamp...)."""
    options = kafka_source_options(kafka, topics, fail_on_data_loss, starting_offsets)
    return spark.readStream.format("kafka").options(**options).load()


def starting_after(topic: str, applied: Mapping[int, int], partitions: Sequence[int]) -> str:
    """Spark's `startingOffsets` for a query of `topic` that resumes after the `applied`
    offsets (by partition): the next offset of each partition, the earliest where
    none was applied. Spark wants every partition of the topic named."""
    if not applied:
        return "earliest"
    starts = {str(p): applied[p] + 1 if p in applied else EARLIEST for p in partitions}
    return json.dumps({topic: starts}, sort_keys=True)


def read_kafka_batch(spark: SparkSession, kafka: KafkaSettings, topics: Sequence[str]) -> DataFrame:
    """Every record currently in `topics`, from earliest to latest offsets."""
    options = kafka_source_options(kafka, topics)
    options.pop("maxOffsetsPerTrigger", None)
    options["endingOffsets"] = "latest"
    return spark.read.format("kafka").options(**options).load()
