"""Ingest stops, naming the offsets, when retention deleted records it had not read."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import TopicPartition
from pyspark.sql import SparkSession

from retailstream.config import LakeSettings, Settings, TopicSettings
from retailstream.errors import UserError
from retailstream.io.delta import read_table
from retailstream.jobs import ingest_events
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.clients import admin_client, flush_or_fail, producer
from retailstream.kafka.topics import create_topics


def _isolated(settings: Settings, topic: str, lake: Path, allow_loss: bool = False) -> Settings:
    return settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topics": {topic: TopicSettings(partitions=1)}}
            ),
            "lake": LakeSettings(root=lake),
            "ingest": settings.ingest.model_copy(update={"allow_data_loss": allow_loss}),
        }
    )


def _publish(settings: Settings, topic: str, start: int, count: int) -> None:
    client = producer(settings.kafka.bootstrap)
    for i in range(start, start + count):
        client.produce(topic, key=b"k", value=f"record-{i}".encode())
    flush_or_fail(client)


def test_records_deleted_before_ingest_are_named_and_skipped_only_on_request(
    spark: SparkSession, settings: Settings, topic_name: str, tmp_path: Path
) -> None:
    strict = _isolated(settings, topic_name, tmp_path / "lake")
    create_topics(strict.kafka.bootstrap, strict.kafka.topics)
    _publish(strict, topic_name, 0, 20)
    ingest_events.run(spark, StreamRun(strict, available_now=True))

    _publish(strict, topic_name, 20, 20)
    # What retention does to old segments, done precisely: offsets 20..29 go unread.
    admin = admin_client(strict.kafka.bootstrap)  # keep it alive until its futures resolve
    deleted = admin.delete_records([TopicPartition(topic_name, 0, 30)], request_timeout=30)
    for future in deleted.values():
        future.result(timeout=60)

    with pytest.raises(UserError) as caught:
        ingest_events.run(spark, StreamRun(strict, available_now=True))
    message = str(caught.value)
    assert (
        f"10 records were deleted by topic retention before ingest read them: {topic_name}[0] offsets 20..29"
        in message
    )
    assert "--set ingest.allow_data_loss=true" in message
    assert read_table(spark, strict.lake.table("bronze_events")).count() == 20

    lenient = _isolated(settings, topic_name, tmp_path / "lake", allow_loss=True)
    ingest_events.run(spark, StreamRun(lenient, available_now=True))
    offsets = [
        r.offset
        for r in read_table(spark, lenient.lake.table("bronze_events")).select("offset").collect()
    ]
    assert sorted(offsets) == list(range(20)) + list(range(30, 40))
