"""The event store's hash chain: each record's hash covers its content and the hash of
the record before it in the same Kafka (topic, partition).

    chain_hash(r) = SHA-256(chain_hash(previous record) || SHA-256(canonical(r)))

The first record of a partition follows GENESIS. `canonical` packs exactly the
fields Kafka gave (topic, partition, offset, Kafka timestamp, key, value), each
with its length, so no two different records share an encoding; ingest_time and
kafka_date are ours and derived, and stay out of it.

Changing a record's content breaks the chain at that record; removing one
breaks it at the next; inserting one breaks it at the insert. Rewriting the
whole rest of a chain is caught by the heads each ingest batch writes apart
from the store (`retailstream verify`).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pandas as pd

GENESIS = bytes(32)
# The columns the hashing reads: bronze's, with the Kafka timestamp as epoch
# milliseconds (computed by Spark, so no session time zone can change a digest).
CONTENT = ("topic", "partition", "offset", "timestamp_ms", "key", "value")


def _field(data: bytes | None) -> bytes:
    # -1 marks a null, which Kafka distinguishes from empty (a tombstone key or value).
    return struct.pack(">i", -1) if data is None else struct.pack(">i", len(data)) + data


def record_digest(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
) -> bytes:
    """SHA-256 of the record's canonical encoding."""
    canonical = b"".join(
        (
            _field(topic.encode()),
            struct.pack(">iqq", partition, offset, -1 if timestamp_ms is None else timestamp_ms),
            _field(None if key is None else bytes(key)),
            _field(None if value is None else bytes(value)),
        )
    )
    return hashlib.sha256(canonical).digest()


def link(previous: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(previous + digest).digest()


def _digests(records: pd.DataFrame) -> Iterator[bytes]:
    columns = [records[c] for c in CONTENT]
    for topic, partition, offset, millis, key, value in zip(*columns, strict=True):
        millis = None if pd.isna(millis) else int(millis)
        yield record_digest(topic, int(partition), int(offset), millis, key, value)


def chain_hashes(records: pd.DataFrame, previous: bytes) -> list[bytes]:
    """The chain hashes of one partition's `records`, which must be sorted by offset,
    continuing from `previous` (the hash of the record before the first one)."""
    hashes = []
    for digest in _digests(records):
        previous = link(previous, digest)
        hashes.append(previous)
    return hashes


@dataclass(frozen=True)
class Break:
    """The first place a partition's chain does not hold."""

    topic: str
    partition: int
    offset: int
    kind: str  # changed | removed | inserted
    detail: str

    def describe(self) -> str:
        return f"{self.topic}[{self.partition}] offset {self.offset}: {self.kind} ({self.detail})"


def first_break(records: pd.DataFrame, previous: bytes = GENESIS) -> Break | None:
    """Walk one partition's stored records (sorted by offset, with `chain_hash`) and
    return where the chain first breaks, or None when every hash follows.

    Which of the three a break is: a record whose removal mends the chain was
    inserted; a break right after a gap in the offsets is a removal; anything
    else is a changed record (its content or its hash).
    """
    digests = list(_digests(records))
    offsets = [int(o) for o in records["offset"]]
    stored = [bytes(h) if h is not None else None for h in records["chain_hash"]]
    topic = str(records["topic"].iloc[0]) if len(records) else ""
    partition = int(records["partition"].iloc[0]) if len(records) else -1
    last_offset: int | None = None
    for i, (offset, digest, have) in enumerate(zip(offsets, digests, stored, strict=True)):
        if have is not None and link(previous, digest) == have and offset != last_offset:
            previous, last_offset = have, offset
            continue
        following = i + 1 < len(offsets) and stored[i + 1] == link(previous, digests[i + 1])
        if offset == last_offset or following:
            return Break(topic, partition, offset, "inserted",
                         "a record the chain does not include")  # fmt: skip
        if last_offset is not None and offset > last_offset + 1:
            return Break(topic, partition, last_offset + 1, "removed",
                         f"offsets {last_offset + 1}..{offset - 1} are missing")  # fmt: skip
        return Break(topic, partition, offset, "changed",
                     "its content or hash differs from what was ingested")  # fmt: skip
    return None


def heads(
    records: Iterable[tuple[str, int, int, bytes]],
) -> dict[tuple[str, int], tuple[int, bytes]]:
    """{(topic, partition): (last offset, its chain hash)} of (topic, partition, offset, hash) rows."""
    found: dict[tuple[str, int], tuple[int, bytes]] = {}
    for topic, partition, offset, digest in records:
        key = (topic, int(partition))
        if key not in found or offset > found[key][0]:
            found[key] = (int(offset), bytes(digest))
    return found
