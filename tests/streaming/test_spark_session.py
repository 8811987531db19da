"""The session: Delta with time travel, the Kafka source in batch and availableNow streams."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from retailstream.config import Settings, TopicSettings
from retailstream.io.delta import StreamTrigger, append_stream, read_table, write_table
from retailstream.io.kafka_source import read_kafka_batch, read_kafka_stream
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics
from retailstream.session import ROCKSDB_PROVIDER


def test_session_has_small_machine_defaults(spark: SparkSession) -> None:
    conf = spark.conf
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.sql.shuffle.partitions") == "2"
    assert conf.get("spark.sql.streaming.stateStore.providerClass") == ROCKSDB_PROVIDER
    assert spark.sparkContext.master == "local[2]"


def test_delta_append_and_time_travel(spark: SparkSession, tmp_path: Path) -> None:
    table = tmp_path / "items"
    first = spark.createDataFrame([("SKU-1", 10), ("SKU-2", 20)], "sku string, qty int")
    write_table(first, table)
    write_table(spark.createDataFrame([("SKU-3", 30)], "sku string, qty int"), table)
    assert read_table(spark, table).count() == 3
    assertDataFrameEqual(read_table(spark, table, version=0), first)


def _publish(settings: Settings, topic: str, count: int) -> None:
    create_topics(settings.kafka.bootstrap, {topic: TopicSettings(partitions=2)})
    client = producer(settings.kafka.bootstrap)
    for i in range(count):
        client.produce(topic, key=f"k{i % 5}".encode(), value=f'{{"n": {i}}}'.encode())
    flush_or_fail(client)


def test_kafka_topic_reads_as_batch_and_as_available_now_stream(
    spark: SparkSession, settings: Settings, topic_name: str, tmp_path: Path
) -> None:
    _publish(settings, topic_name, 40)
    batch = read_kafka_batch(spark, settings.kafka, [topic_name])
    assert batch.count() == 40

    query = append_stream(
        read_kafka_stream(spark, settings.kafka, [topic_name]).select(
            "partition", "offset", "value"
        ),
        path=tmp_path / "copy",
        checkpoint=tmp_path / "checkpoint",
        query_name="session_test_copy",
        trigger=StreamTrigger(available_now=True),
    )
    query.awaitTermination(timeout=180)
    assert not query.isActive
    streamed = read_table(spark, tmp_path / "copy")
    assertDataFrameEqual(streamed, batch.select("partition", "offset", "value"))

    # A second availableNow run starts from the checkpoint: nothing is read twice.
    _publish(settings, topic_name, 10)
    again = append_stream(
        read_kafka_stream(spark, settings.kafka, [topic_name]).select(
            "partition", "offset", "value"
        ),
        path=tmp_path / "copy",
        checkpoint=tmp_path / "checkpoint",
        query_name="session_test_copy",
        trigger=StreamTrigger(available_now=True),
    )
    again.awaitTermination(timeout=180)
    assert read_table(spark, tmp_path / "copy").count() == 50
