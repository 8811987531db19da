"""Did topic retention delete records that a query has not read yet?

Spark's Kafka source with `failOnDataLoss=true` stops on such a gap with a
generic message; this module names the exact offsets beforehand so that the
user knows what is lost and can decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import TopicPartition

from retailstream.kafka.clients import consumer


@dataclass(frozen=True, order=True)
class LostRange:
    topic: str
    partition: int
    first: int  # first offset the query needed
    last: int  # last offset that is gone (the earliest still available minus one)

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] offsets {self.first}..{self.last}"


def lost_ranges(
    needed: Mapping[str, Mapping[int, int]], earliest: Mapping[str, Mapping[int, int]]
) -> list[LostRange]:
    """Ranges the query still needs that are older than what Kafka still holds.

    A partition missing from `earliest` (topic deleted) loses nothing we can
    count here and is left to Spark to report.
    """
    lost = []
    for topic, parts in needed.items():
        for partition, first_needed in parts.items():
            available = earliest.get(topic, {}).get(partition)
            if available is not None and first_needed < available:
                lost.append(LostRange(topic, partition, first_needed, available - 1))
    return sorted(lost)


def earliest_offsets(
    bootstrap: str, partitions: Mapping[str, Iterable[int]]
) -> dict[str, dict[int, int]]:
    """The earliest offset Kafka still holds for each given partition."""
    reader = consumer(bootstrap, group_id="retailstream-retention-check")
    try:
        result: dict[str, dict[int, int]] = {}
        for topic, parts in partitions.items():
            for partition in parts:
                low, _ = reader.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                result.setdefault(topic, {})[partition] = low
        return result
    finally:
        reader.close()
