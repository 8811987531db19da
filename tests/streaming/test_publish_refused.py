"""A record the broker refuses makes `publish` fail: it is never counted as published."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.truth import TruthWriter
from retailstream.kafka.clients import producer
from retailstream.kafka.publish import publish
from retailstream.world.records import EventBatch, KafkaRecord


class _OneBatch:
    """Stands in for the generator: one batch of the given records, then nothing."""

    def __init__(self, records: list[KafkaRecord]) -> None:
        self.records = records

    def next_batch(self, n: int) -> EventBatch:
        batch, self.records = self.records[:n], self.records[n:]
        return EventBatch(records=batch, first_seq=0)


def test_a_record_the_broker_refuses_fails_the_run(settings: Settings, tmp_path: Path) -> None:
    topic = f"test.small.{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
    small = NewTopic(topic, num_partitions=1, replication_factor=1,
                     config={"max.message.bytes": "2048"})  # fmt: skip
    admin.create_topics([small])[topic].result(timeout=30)
    records = [
        KafkaRecord(topic, b"a", b"{}"),
        # Within the producer's limit (16 MiB), over the topic's: refused by the broker.
        KafkaRecord(topic, b"b", b"x" * 100_000),
        KafkaRecord(topic, b"c", b"{}"),
    ]
    # The broker refuses the whole produce batch the big record travels in, so the
    # small records around it fail too: what matters is that none counts as published.
    refused = r"Kafka refused \d records, the first: test\.small\.\w+: .*MSG_SIZE_TOO_LARGE"
    with pytest.raises(UserError, match=refused):
        publish(
            _OneBatch(records),  # type: ignore[arg-type]
            producer(settings.kafka.bootstrap, **{"compression.type": "none"}),
            TruthWriter(tmp_path / "lake"),
            rate=None, max_events=3, max_seconds=None, batch_size=10,
        )  # fmt: skip
