"""Creating and describing the topics declared in config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import ConfigResource, NewTopic

from retailstream.config import TopicSettings
from retailstream.errors import UserError
from retailstream.kafka.clients import admin_client, consumer, require_broker


@dataclass(frozen=True)
class PartitionInfo:
    partition: int
    leader: int
    earliest: int
    latest: int

    @property
    def records(self) -> int:
        return self.latest - self.earliest


@dataclass(frozen=True)
class TopicInfo:
    name: str
    partitions: tuple[PartitionInfo, ...]
    retention_ms: str

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)


def create_topics(bootstrap: str, declared: Mapping[str, TopicSettings]) -> dict[str, str]:
    """Create every declared topic that is missing; return what happened per topic.

    Existing topics are left as they are (reported as `exists`); a topic that
    exists with fewer partitions than declared is reported, not altered.
    """
    require_broker(bootstrap)
    admin = admin_client(bootstrap)
    existing = admin.list_topics(timeout=10).topics
    outcome: dict[str, str] = {}
    to_create = []
    for name, spec in declared.items():
        if name in existing:
            have = len(existing[name].partitions)
            outcome[name] = (
                "exists"
                if have == spec.partitions
                else f"exists with {have} partitions (declared {spec.partitions})"
            )
            continue
        to_create.append(
            NewTopic(
                name,
                num_partitions=spec.partitions,
                replication_factor=spec.replication_factor,
                config={"retention.ms": str(spec.retention_ms), "retention.bytes": "-1"},
            )
        )
    if to_create:
        for name, future in admin.create_topics(to_create, operation_timeout=30).items():
            try:
                future.result()
                outcome[name] = "created"
            except KafkaException as exc:
                raise UserError(f"could not create topic {name}: {exc.args[0].str()}") from exc
    return outcome


def list_topics(bootstrap: str) -> list[str]:
    """User topics on the cluster (internal `__` topics left out), sorted."""
    require_broker(bootstrap)
    topics = admin_client(bootstrap).list_topics(timeout=10).topics
    return sorted(t for t in topics if not t.startswith("__"))


def topic_partitions(bootstrap: str, names: Sequence[str]) -> dict[str, list[int]]:
    """The partition ids of each of `names` that exists on the cluster (absent ones left out)."""
    metadata = admin_client(bootstrap).list_topics(timeout=10).topics
    return {n: sorted(metadata[n].partitions) for n in names if n in metadata}


def describe_topics(bootstrap: str, names: list[str] | None = None) -> list[TopicInfo]:
    """Partitions, leaders, offset ranges and retention of the named (or all) topics."""
    require_broker(bootstrap)
    admin = admin_client(bootstrap)
    metadata = admin.list_topics(timeout=10).topics
    wanted = names or sorted(t for t in metadata if not t.startswith("__"))
    missing = [n for n in wanted if n not in metadata]
    if missing:
        raise UserError(
            f"no such topic: {', '.join(missing)} (create it with `retailstream topics create`)"
        )
    resources = [ConfigResource(ConfigResource.Type.TOPIC, n) for n in wanted]
    retention = {}
    for resource, future in admin.describe_configs(resources).items():
        entries = future.result()
        retention[resource.name] = (
            entries["retention.ms"].value if "retention.ms" in entries else "?"
        )
    reader = consumer(bootstrap, group_id="retailstream-describe")
    try:
        infos = []
        for name in wanted:
            parts = []
            for pid, part in sorted(metadata[name].partitions.items()):
                low, high = reader.get_watermark_offsets(TopicPartition(name, pid), timeout=10)
                parts.append(PartitionInfo(pid, part.leader, low, high))
            infos.append(TopicInfo(name, tuple(parts), retention[name]))
        return infos
    finally:
        reader.close()
