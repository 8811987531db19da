"""A declared topic that does not exist yet does not stop ingest; it is read once created."""

from __future__ import annotations

import uuid
from pathlib import Path

from pyspark.sql import SparkSession

from retailstream.config import LakeSettings, Settings, TopicSettings
from retailstream.io.delta import read_table
from retailstream.jobs import ingest_events
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics


def _publish(bootstrap: str, topic: str, count: int) -> None:
    client = producer(bootstrap)
    for i in range(count):
        client.produce(topic, key=b"k", value=f"{topic}-{i}".encode())
    flush_or_fail(client)


def test_missing_topic_is_reported_and_picked_up_later(
    spark: SparkSession, settings: Settings, tmp_path: Path, capsys
) -> None:
    present, later = f"test.present.{uuid.uuid4().hex[:6]}", f"test.later.{uuid.uuid4().hex[:6]}"
    local = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={
                    "topics": {
                        present: TopicSettings(partitions=1),
                        later: TopicSettings(partitions=1),
                    }
                }
            ),
            "lake": LakeSettings(root=tmp_path / "lake"),
        }
    )
    create_topics(local.kafka.bootstrap, {present: local.kafka.topics[present]})
    _publish(local.kafka.bootstrap, present, 10)

    ingest_events.run(spark, StreamRun(local, available_now=True))
    assert f"topics not created yet: {later}" in capsys.readouterr().err
    assert read_table(spark, local.lake.table("bronze_events")).count() == 10

    create_topics(local.kafka.bootstrap, local.kafka.topics)
    _publish(local.kafka.bootstrap, later, 7)
    ingest_events.run(spark, StreamRun(local, available_now=True))
    counts = {
        r.topic: r["count"]
        for r in read_table(spark, local.lake.table("bronze_events"))
        .groupBy("topic")
        .count()
        .collect()
    }
    assert counts == {present: 10, later: 7}
