"""Tamper-evidence of the event store: ingest hashes every record and chains each
batch's digest; records edited, deleted or inserted straight in the Delta table, and
edits of the chain itself, are each caught by `verify` at their place (one tamper per
partition, all named by one walk of the store), and an untouched store verifies clean."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from retailstream.config import LakeSettings, Settings, TopicSettings
from retailstream.io.datasets import bronze_table, chain_table
from retailstream.io.delta import read_table
from retailstream.jobs import ingest_events, verify_store
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics


def _publish(bootstrap: str, topic: str, partitions: int, per_partition: int, start: int) -> None:
    client = producer(bootstrap)
    for partition in range(partitions):
        for i in range(start, start + per_partition):
            client.produce(topic, key=f"k{i}".encode(), value=f'{{"n": {i}}}'.encode(),
                           partition=partition)  # fmt: skip
    flush_or_fail(client)


# The record hash as plain SQL, as someone covering their tracks would write it.
RECORD_HASH_SQL = (
    "unhex(sha2(concat(unhex(lpad(hex(octet_length(CAST(topic AS BINARY))), 8, '0')), "
    "CAST(topic AS BINARY), unhex(lpad(hex(partition), 8, '0')), unhex(lpad(hex(offset), 16, '0')), "
    "unhex(lpad(hex(unix_millis(kafka_timestamp)), 16, '0')), "
    "unhex(lpad(hex(octet_length(key)), 8, '0')), key, "
    "unhex(lpad(hex(octet_length({value})), 8, '0')), {value}), 256))"
)


def _where(topic: str, partition: int, offset: int) -> str:
    return f"topic = '{topic}' AND partition = {partition} AND offset = {offset}"


# One tamper per partition, each its own chain: a single verify must name every one at
# its place, and leave the untouched partition 0 out. Each partition holds two ingest
# batches, offsets 0..11 and 12..19.
PARTITIONS = 9


def test_edits_deletions_and_insertions_in_the_store_are_caught(
    spark: SparkSession, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    topic = f"test.chain.{uuid.uuid4().hex[:6]}"
    local = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topics": {topic: TopicSettings(partitions=PARTITIONS)}}
            ),
            "lake": LakeSettings(root=tmp_path / "lake"),
        }
    )
    create_topics(local.kafka.bootstrap, local.kafka.topics)
    # Two ingest batches: the second links each chain to where the first ended.
    _publish(local.kafka.bootstrap, topic, PARTITIONS, per_partition=12, start=0)
    ingest_events.run(spark, StreamRun(local, available_now=True))
    _publish(local.kafka.bootstrap, topic, PARTITIONS, per_partition=8, start=12)
    ingest_events.run(spark, StreamRun(local, available_now=True))

    path = bronze_table(local)
    table = f"delta.`{path}`"
    assert read_table(spark, path).where("record_hash IS NULL").count() == 0
    chain = f"delta.`{chain_table(local)}`"
    batches = spark.sql(f"SELECT partition, first_offset, last_offset, records FROM {chain}")
    assert sorted(tuple(r) for r in batches.collect()) == sorted(
        batch for p in range(PARTITIONS) for batch in ((p, 0, 11, 12), (p, 12, 19, 8))
    )
    clean = verify_store.verify(spark, local)
    assert clean.intact
    assert (clean.records, clean.chains, clean.unchained) == (20 * PARTITIONS, PARTITIONS, 0)

    def where(partition: int, offset: int) -> str:
        return _where(topic, partition, offset)

    def copy(partition: int) -> str:
        return f"SELECT * FROM {table} WHERE {where(partition, 3)}"

    edited = "CAST('{\"n\": 999}' AS BINARY)"
    hashed = RECORD_HASH_SQL.format(value=edited)
    forged = "CAST('forged' AS BINARY)"
    rest = "kafka_timestamp, ingest_time, kafka_date, record_hash"
    # partition: (the tamper, where verify must say its chain breaks)
    tampers = {
        1: (f"UPDATE {table} SET value = {edited} WHERE {where(1, 5)}", (5, "changed")),
        # A hash replaced on its own breaks the chain there as well.
        2: (f"UPDATE {table} SET record_hash = unhex(sha2(CAST('x' AS BINARY), 256)) WHERE {where(2, 5)}",
            (5, "changed")),
        # Content and hash rewritten together: the batch's digest, kept apart, still
        # differs, and the batch 12..19 is named, not the record.
        3: (f"UPDATE {table} SET value = {edited}, record_hash = {hashed} WHERE {where(3, 15)}",
            (12, "changed")),
        # The chain itself: a batch's record count edited to hide a removal.
        4: (f"UPDATE {chain} SET records = 7 WHERE partition = 4 AND first_offset = 12",
            (12, "changed")),
        5: (f"DELETE FROM {table} WHERE {where(5, 7)}", (7, "removed")),
        # The end of the chain too: the heads the last batch recorded name it.
        6: (f"DELETE FROM {table} WHERE {where(6, 19)}", (19, "removed")),
        7: (f"INSERT INTO {table} SELECT topic, partition, offset, key, {forged}, {rest} "
            f"FROM ({copy(7)})", (3, "inserted")),
        8: (f"INSERT INTO {table} SELECT topic, partition, 20, key, value, {rest} "
            f"FROM ({copy(8)})", (20, "inserted")),
    }  # fmt: skip
    for tamper, _ in tampers.values():
        spark.sql(tamper)

    verdict = verify_store.verify(spark, local)
    assert not verdict.intact and verdict.chains == PARTITIONS
    assert {(b.topic, b.partition): (b.offset, b.kind) for b in verdict.breaks} == {
        (topic, partition): place for partition, (_, place) in tampers.items()
    }
    capsys.readouterr()
    assert verify_store.run(spark, verify_store.VerifyRun(local)) == 1
    out = capsys.readouterr().out
    assert f"NOT intact: {len(tampers)} of {PARTITIONS} chains broken" in out
    assert f"{topic}[5] offset 7: removed" in out
