"""The event store's hashes on small in-memory frames: the JVM expressions agree with
the Python references byte for byte, every field Kafka gave is covered, records find
their batch, and the batch chain shows an edited link."""

from __future__ import annotations

from datetime import UTC, datetime

from pyspark.sql import DataFrame, SparkSession

from retailstream.io.event_chain import CHAIN_SCHEMA
from retailstream.transforms.chain import (
    GENESIS,
    batch_summary,
    chain_faults,
    digest_of,
    first_gap,
    in_batches,
    link,
    record_digest,
    record_hash,
)

BRONZE = (
    "topic string, partition int, offset long, key binary, value binary, kafka_timestamp timestamp"
)


def _bronze(spark: SparkSession, rows: list[tuple]) -> DataFrame:
    return spark.createDataFrame(rows, BRONZE)


def test_the_jvm_record_hash_is_the_reference_digest(spark: SparkSession) -> None:
    rows = [
        ("shop.orders", 3, 123_456_789_012, b"k", b'{"n": 1}', datetime(2025, 1, 1, tzinfo=UTC)),
        ("caf\u00e9.topic", 0, 0, None, b"", None),  # non-ASCII topic, null key, no timestamp
        ("x", 11, 5, b"", None, datetime(1969, 12, 31, 23, 59, tzinfo=UTC)),  # before 1970
    ]
    hashed = _bronze(spark, rows).select("*", record_hash().alias("h")).collect()
    for r in hashed:
        millis = None if r.kafka_timestamp is None else int(r.kafka_timestamp.timestamp() * 1000)
        assert bytes(r.h) == record_digest(r.topic, r.partition, r.offset, millis, r.key, r.value)


def test_every_field_kafka_gave_is_covered_and_null_is_not_empty() -> None:
    base = ("shop.orders", 1, 5, 1_700_000_000_000, b"k", b"v")
    variants = [
        record_digest(*base),
        record_digest("shop.ratings", *base[1:]),
        record_digest(base[0], 2, *base[2:]),
        record_digest(base[0], base[1], 6, *base[3:]),
        record_digest(*base[:3], 1_700_000_000_001, *base[4:]),
        record_digest(*base[:4], None, b"v"),
        record_digest(*base[:4], b"", b"v"),
        record_digest(*base[:5], b"v2"),
        # Moving bytes from the key to the value must not give the same encoding.
        record_digest(*base[:4], b"kv", b""),
    ]
    assert len(set(variants)) == len(variants)
    assert record_digest(*base) == record_digest(*base)


def test_a_batch_digest_follows_offset_order_whatever_order_rows_come_in(
    spark: SparkSession,
) -> None:
    when = datetime(2025, 3, 3, tzinfo=UTC)
    rows = [("t", 0, offset, b"k", f"v{offset}".encode(), when) for offset in (4, 2, 3, 5)]
    frame = _bronze(spark, rows).repartition(3).withColumn("record_hash", record_hash())
    (summary,) = batch_summary(frame).collect()
    millis = int(when.timestamp() * 1000)
    expected = digest_of(
        record_digest("t", 0, offset, millis, b"k", f"v{offset}".encode())
        for offset in (2, 3, 4, 5)
    )
    assert (summary.first_offset, summary.last_offset, summary.records) == (2, 5, 4)
    assert bytes(summary.records_digest) == expected


def _chain(spark: SparkSession, batches: list[tuple[int, int, int, int]]) -> DataFrame:
    """Chain rows of partition ("t", 0) for (batch_id, first, last, records), linked."""
    rows, previous = [], GENESIS
    for batch_id, first, last, records in batches:
        digest = digest_of([bytes([batch_id]) * 32])
        previous = link(previous, digest, first, last, records)
        rows.append(("t", 0, batch_id, first, last, records, digest, previous))
    return spark.createDataFrame(rows, CHAIN_SCHEMA)


def test_each_record_belongs_to_the_nearest_batch_end_at_or_above_it(spark: SparkSession) -> None:
    chain = _chain(spark, [(0, 0, 4, 5), (1, 5, 9, 5), (2, 10, 10, 1)])
    records = spark.createDataFrame(
        [("t", 0, offset) for offset in (0, 4, 5, 9, 10, 11)],
        "topic string, partition int, offset long",
    )
    located = {r.offset: r.batch_id for r in in_batches(records, chain).collect()}
    assert located == {0: 0, 4: 0, 5: 1, 9: 1, 10: 2, 11: None}


def test_a_linked_chain_holds_and_an_edited_link_shows(spark: SparkSession) -> None:
    chain = _chain(spark, [(0, 0, 4, 5), (1, 5, 9, 5), (2, 10, 12, 3)])
    assert chain_faults(chain).count() == 0
    edited = chain.withColumn("records", chain.records - (chain.batch_id == 1).cast("long"))
    assert [r.batch_id for r in chain_faults(edited).collect()] == [1]


def test_the_first_missing_run_of_offsets_is_found() -> None:
    assert first_gap([0, 1, 2, 3], 0, 3) is None
    assert first_gap([0, 1, 3, 5], 0, 5) == (2, 2)
    assert first_gap([2, 3], 0, 3) == (0, 1)
    assert first_gap([0, 1], 0, 3) == (2, 3)
    assert first_gap([0, 0, 1], 0, 1) is None
