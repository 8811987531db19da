"""The event store's tamper-evidence, as Spark expressions: a hash per record, and a
chain of per-batch digests per Kafka (topic, partition).

    record_hash(r)   = SHA-256(canonical(r))
    records_digest   = SHA-256(record_hash of each record of the batch's partition, in offset order)
    chain_hash(b)    = SHA-256(chain_hash(b - 1) || records_digest(b) || first, last offset, count)

`canonical` packs exactly the fields Kafka gave (topic, partition, offset, Kafka
timestamp, key, value), each with its length, so no two different records share
an encoding; ingest_time and kafka_date are ours and derived, and stay out of it.

Everything per record runs in the JVM (`sha2`, `concat`, an ordered `listagg`),
so hashing costs what Spark's own expressions cost, not a Python worker per
task. Only the chain of batch digests is sequential, one link per batch and
partition, computed on the driver.

What `verify` can then name:
- a record whose content or hash was edited: its hash no longer matches;
- a record removed: its batch holds fewer records than ingest wrote, at the gap;
- a record inserted: an offset taken twice, or beyond where ingest ended;
- records rewritten together with their hashes: their batch's digest differs
  from the one ingest wrote apart from the store.

This module holds the pure parts: Python references of the encodings (the
unit tests hold the JVM expressions to them) and DataFrame transforms.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

GENESIS = bytes(32)
RECORD_HASH = "record_hash"


# -- Python references ------------------------------------------------------------------


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


def digest_of(record_hashes: Iterable[bytes]) -> bytes:
    """The digest of one batch's partition: its record hashes, in offset order."""
    return hashlib.sha256(b"".join(record_hashes)).digest()


def link(
    previous: bytes, digest: bytes, first_offset: int, last_offset: int, records: int
) -> bytes:
    """The chain hash of a batch's partition, following the one before it."""
    return hashlib.sha256(
        previous + digest + struct.pack(">qqq", first_offset, last_offset, records)
    ).digest()


# -- Spark expressions ------------------------------------------------------------------


def _int32(n: Column) -> Column:  # big-endian, for n >= 0
    return F.unhex(F.lpad(F.hex(n), 8, "0"))


def _int64(n: Column) -> Column:  # big-endian; hex() of a negative long is its two's complement
    return F.unhex(F.lpad(F.hex(n), 16, "0"))


def _length_prefixed(data: Column) -> Column:
    return F.when(data.isNull(), F.unhex(F.lit("FFFFFFFF"))).otherwise(
        F.concat(_int32(F.octet_length(data)), data)
    )


def record_hash() -> Column:
    """`record_digest` of a bronze row, as a Spark expression (the Kafka timestamp is
    taken as epoch milliseconds, so no session time zone can change a hash)."""
    millis = F.coalesce(F.unix_millis("kafka_timestamp"), F.lit(-1).cast("long"))
    canonical = F.concat(
        _length_prefixed(F.col("topic").cast("binary")),
        _int32(F.col("partition")),
        _int64(F.col("offset")),
        _int64(millis),
        _length_prefixed(F.col("key")),
        _length_prefixed(F.col("value")),
    )
    return F.unhex(F.sha2(canonical, 256))


def records_digest(hashes: str = RECORD_HASH) -> Column:
    """Aggregate: `digest_of` the group's `hashes`, in offset order."""
    return F.unhex(
        F.sha2(F.expr(f"listagg({hashes}) WITHIN GROUP (ORDER BY offset, {hashes})"), 256)
    )


def batch_summary(rows: DataFrame, *by: str, prefix: str = "") -> DataFrame:
    """Per (topic, partition, *by) of rows with `record_hash`: first and last offset,
    count and digest (named `first_offset`, `last_offset`, `records`,
    `records_digest`, each after `prefix`)."""
    return rows.groupBy("topic", "partition", *by).agg(
        F.min("offset").alias(f"{prefix}first_offset"),
        F.max("offset").alias(f"{prefix}last_offset"),
        F.count("*").alias(f"{prefix}records"),
        records_digest().alias(f"{prefix}records_digest"),
    )


# -- Verifying --------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """The first place a partition's records do not hold."""

    topic: str
    partition: int
    offset: int
    kind: str  # changed | removed | inserted
    detail: str

    def describe(self) -> str:
        return f"{self.topic}[{self.partition}] offset {self.offset}: {self.kind} ({self.detail})"


def in_batches(records: DataFrame, chain: DataFrame) -> DataFrame:
    """`records` (topic, partition, offset, ...) with the `batch_id` whose offset range
    holds each one, null past the last batch.

    A batch's range ends at its `last_offset` and starts after the batch before it,
    so each record belongs to the nearest batch end at or above its offset: a
    running `last` over both, newest offset first, finds it in one sort, where a
    range join would compare every record with every batch.
    """
    ends = chain.select(
        "topic", "partition", F.col("last_offset").alias("offset"), "batch_id",
        F.lit(0).alias("_is_record"),
    )  # fmt: skip
    marked = records.withColumn("batch_id", F.lit(None).cast("long")).withColumn(
        "_is_record", F.lit(1)
    )
    newest_first = (
        Window.partitionBy("topic", "partition")
        .orderBy(F.col("offset").desc(), F.col("_is_record"))
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    return (
        marked.unionByName(ends, allowMissingColumns=True)
        .withColumn("batch_id", F.last("batch_id", ignorenulls=True).over(newest_first))
        .where(F.col("_is_record") == 1)
        .drop("_is_record")
    )


def rehashed(records: DataFrame) -> DataFrame:
    """Bronze rows as (topic, partition, offset, stored_hash, record_hash), the last
    computed again from the content."""
    return records.select(
        "topic", "partition", "offset",
        F.col(RECORD_HASH).alias("stored_hash"), record_hash().alias(RECORD_HASH),
    )  # fmt: skip


def record_faults(located: DataFrame) -> DataFrame:
    """Rehashed rows inside a batch whose stored hash does not match their content,
    or at an offset taken twice: (topic, partition, offset, batch_id, kind)."""
    copies = F.count("*").over(Window.partitionBy("topic", "partition", "offset"))
    checked = located.where(F.col("batch_id").isNotNull()).withColumn("_copies", copies)
    return checked.where(
        (F.col("_copies") > 1)
        | F.col("stored_hash").isNull()
        | (F.col("stored_hash") != F.col(RECORD_HASH))
    ).select(
        "topic", "partition", "offset", "batch_id",
        F.when(F.col("_copies") > 1, "inserted").otherwise("changed").alias("kind"),
    )  # fmt: skip


def batch_faults(located: DataFrame, chain: DataFrame) -> DataFrame:
    """Batches whose records in the store differ from what ingest wrote: each chain row
    beside the same summary of what the store holds (`stored_first_offset`, ...,
    `stored_records_digest`: `batch_summary`, recomputed from content; null when none
    of its records is left), plus a row with null `batch_id` per partition holding
    records past the last batch."""
    found = batch_summary(located, "batch_id", prefix="stored_")
    return chain.join(found, ["topic", "partition", "batch_id"], "full_outer").where(
        F.col("records_digest").isNull()
        | F.col("stored_records_digest").isNull()
        | (F.col("records_digest") != F.col("stored_records_digest"))
        | (F.col("records") != F.col("stored_records"))
    )


def first_gap(offsets: Sequence[int], first: int, last: int) -> tuple[int, int] | None:
    """The first run of offsets in first..last missing from sorted `offsets`."""
    expected = first
    for offset in offsets:
        if offset > expected:
            return expected, offset - 1
        expected = max(expected, offset + 1)
    return (expected, last) if expected <= last else None


def chain_faults(chain: DataFrame) -> DataFrame:
    """Rows of the batch chain whose `chain_hash` does not follow from the row before
    it in its partition (`link`, in Spark): the chain table itself was edited."""
    before = Window.partitionBy("topic", "partition").orderBy("batch_id")
    previous = F.coalesce(F.lag("chain_hash").over(before), F.lit(GENESIS))
    expected = F.unhex(
        F.sha2(
            F.concat(
                previous, F.col("records_digest"), _int64(F.col("first_offset")),
                _int64(F.col("last_offset")), _int64(F.col("records")),
            ),
            256,
        )
    )  # fmt: skip
    return (
        chain.withColumn("_expected", expected)
        .where(F.col("chain_hash").isNull() | (F.col("chain_hash") != F.col("_expected")))
        .drop("_expected")
    )
