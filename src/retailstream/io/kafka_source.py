"""Reading Kafka topics with Spark's Kafka source (streaming and batch)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pyspark.sql import DataFrame, SparkSession

from retailstream.config import KafkaSettings


def topics_pattern(topics: Sequence[str]) -> str:
    """A regex matching exactly `topics`.

    Subscribing by pattern rather than by name lets a query start while a
    declared topic does not exist yet and pick it up once it is created;
    Spark's `subscribe` fails the query on an unknown topic.
    """
    return "^(?:" + "|".join(re.escape(t) for t in sorted(topics)) + ")$"


def kafka_source_options(
    kafka: KafkaSettings, topics: Sequence[str], fail_on_data_loss: bool = True
) -> dict[str, str]:
    """Options shared by the streaming and the batch read of `topics`.

    `failOnDataLoss` is true unless the caller decided otherwise: offsets
    deleted by retention before they were read must stop the query, not be
    skipped silently.
    """
    options = {
        "kafka.bootstrap.servers": kafka.bootstrap,
        "subscribePattern": topics_pattern(topics),
        "startingOffsets": "earliest",
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
    spark: SparkSession, kafka: KafkaSettings, topics: Sequence[str], fail_on_data_loss: bool = True
) -> DataFrame:
    """An unbounded DataFrame of Kafka records (key, value, topic, partition, offset, timestamp...)."""
    options = kafka_source_options(kafka, topics, fail_on_data_loss)
    return spark.readStream.format("kafka").options(**options).load()


def read_kafka_batch(spark: SparkSession, kafka: KafkaSettings, topics: Sequence[str]) -> DataFrame:
    """Every record currently in `topics`, from earliest to latest offsets."""
    options = kafka_source_options(kafka, topics)
    options.pop("maxOffsetsPerTrigger", None)
    options["endingOffsets"] = "latest"
    return spark.read.format("kafka").options(**options).load()
