"""How far behind its sources a stream is, in records and in seconds.

Pure arithmetic over "read up to" positions and "the source ends at" positions,
plus the two readers that supply them: Kafka (end offsets, and the timestamp of
the first record not yet read) and a Delta table's JSON log (rows and commit
time of each version not yet read). Seconds behind are the age of the oldest
record not yet read: 0 when a stream has read everything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import TopicPartition

from retailstream.io.delta_log import delta_versions
from retailstream.kafka.clients import consumer

# (topic, partition)
Partition = tuple[str, int]
# How long a read of the first unread records may take altogether.
FIRST_UNREAD_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Lag:
    """A stream's lag behind one source partition (or a whole Delta table)."""

    source: str  # the topic, or the Delta table's name
    partition: int | None
    records: int
    seconds: float


def records_behind(next_to_read: Mapping[Partition, int], ends: Mapping[Partition, int]) -> dict:
    """Records each partition holds past what was read (pure); partitions
    Kafka does not report (deleted) count 0."""
    return {key: max(0, ends.get(key, offset) - offset) for key, offset in next_to_read.items()}


def kafka_lags(
    next_to_read: Mapping[Partition, int],
    ends: Mapping[Partition, int],
    first_unread_ms: Mapping[Partition, int],
    now_ms: int,
) -> list[Lag]:
    """Per partition: records behind, and the age of its first unread record (pure).
    A lagging partition whose first unread record could not be read is as old as
    the oldest one that could (never 0: it is behind)."""
    behind = records_behind(next_to_read, ends)
    known = [now_ms - ms for ms in first_unread_ms.values()]
    fallback = max(known, default=0)
    lags = []
    for (topic, partition), records in sorted(behind.items()):
        if records == 0:
            seconds = 0.0
        else:
            age_ms = (
                now_ms - first_unread_ms[(topic, partition)]
                if (topic, partition) in first_unread_ms
                else fallback
            )
            seconds = max(0, age_ms) / 1000
        lags.append(Lag(topic, partition, records, seconds))
    return lags


class KafkaPositions:
    """Kafka's end offsets and the timestamps of first unread records, with one consumer."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = consumer(bootstrap, group_id="retailstream-health")

    def ends(self, partitions: Iterable[Partition], timeout_s: float = 5.0) -> dict[Partition, int]:
        return {
            (t, p): int(
                self._consumer.get_watermark_offsets(TopicPartition(t, p), timeout=timeout_s)[1]
            )
            for t, p in partitions
        }

    def timestamps_at(
        self, offsets: Mapping[Partition, int], timeout_s: float = FIRST_UNREAD_TIMEOUT_S
    ) -> dict[Partition, int]:
        """The Kafka timestamp (ms) of the record at each offset, where it could be read."""
        if not offsets:
            return {}
        self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in offsets.items()])
        found: dict[Partition, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(found) < len(offsets) and time.monotonic() < deadline:
            for message in self._consumer.consume(len(offsets), timeout=0.2):
                if message.error() is not None:
                    continue
                key = (str(message.topic()), int(message.partition() or 0))
                if key in offsets and key not in found:
                    found[key] = int(message.timestamp()[1])
                    self._consumer.pause([TopicPartition(key[0], key[1])])
        self._consumer.unassign()
        return found

    def close(self) -> None:
        self._consumer.close()


def delta_lag(table: Path, next_version: int | None, now_s: float) -> Lag:
    """Rows in the versions of `table` not yet read, and the age of the oldest."""
    later = delta_versions(table, next_version or 0)
    rows = sum(r for _, r, _ in later)
    seconds = max(0.0, now_s - min(w for _, _, w in later)) if later and rows else 0.0
    return Lag(table.name, None, rows, seconds)
