"""Tamper-evidence of the event store: ingest hashes every record and chains each
batch's digest; records edited, deleted or inserted straight in the Delta table, and
edits of the chain itself, are each caught by `verify`, and an untouched store
verifies clean."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from retailstream.config import LakeSettings, Settings, TopicSettings
from retailstream.io.datasets import bronze_table, chain_table
from retailstream.io.delta import latest_version, read_table
from retailstream.jobs import ingest_events, verify_store
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics


def _publish(bootstrap: str, topic: str, per_partition: int, start: int) -> None:
    client = producer(bootstrap)
    for partition in (0, 1):
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


def test_edits_deletions_and_insertions_in_the_store_are_caught(
    spark: SparkSession, settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    topic = f"test.chain.{uuid.uuid4().hex[:6]}"
    local = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(
                update={"topics": {topic: TopicSettings(partitions=2)}}
            ),
            "lake": LakeSettings(root=tmp_path / "lake"),
        }
    )
    create_topics(local.kafka.bootstrap, local.kafka.topics)
    # Two ingest batches: the second links each chain to where the first ended.
    _publish(local.kafka.bootstrap, topic, per_partition=12, start=0)
    ingest_events.run(spark, StreamRun(local, available_now=True))
    _publish(local.kafka.bootstrap, topic, per_partition=8, start=12)
    ingest_events.run(spark, StreamRun(local, available_now=True))

    path = bronze_table(local)
    table = f"delta.`{path}`"
    assert read_table(spark, path).where("record_hash IS NULL").count() == 0
    chain = f"delta.`{chain_table(local)}`"
    batches = spark.sql(f"SELECT partition, first_offset, last_offset, records FROM {chain}")
    assert sorted(tuple(r) for r in batches.collect()) == [
        (0, 0, 11, 12), (0, 12, 19, 8), (1, 0, 11, 12), (1, 12, 19, 8)
    ]  # fmt: skip
    clean = verify_store.verify(spark, local)
    assert clean.intact and (clean.records, clean.chains, clean.unchained) == (40, 2, 0)
    untouched = latest_version(spark, path)
    chain_untouched = latest_version(spark, chain_table(local))

    def caught(tamper: str) -> tuple[int, str]:
        """Tamper with the pristine store, return where verify says the one broken chain
        breaks, and restore the table tampered with (only that one: a RESTORE is a commit)."""
        spark.sql(tamper)
        verdict = verify_store.verify(spark, local)
        if tamper.startswith(f"UPDATE {chain}"):
            spark.sql(f"RESTORE TABLE {chain} TO VERSION AS OF {chain_untouched}")
        else:
            spark.sql(f"RESTORE TABLE {table} TO VERSION AS OF {untouched}")
        assert len(verdict.breaks) == 1, verdict.breaks
        (found,) = verdict.breaks
        assert (found.topic, found.partition) == (topic, 1), found
        return found.offset, found.kind

    value_edit = (
        f"UPDATE {table} SET value = CAST('{{\"n\": 999}}' AS BINARY) WHERE {_where(topic, 1, 5)}"
    )
    assert caught(value_edit) == (5, "changed")
    # A hash replaced on its own breaks the chain there as well.
    rehash = f"UPDATE {table} SET record_hash = unhex(sha2(CAST('x' AS BINARY), 256)) WHERE {_where(topic, 1, 5)}"
    assert caught(rehash) == (5, "changed")
    # Content and hash rewritten together: the batch's digest, kept apart, still differs.
    hashed = RECORD_HASH_SQL.format(value="CAST('{\"n\": 999}' AS BINARY)")
    rewrite = f"UPDATE {table} SET value = CAST('{{\"n\": 999}}' AS BINARY), record_hash = {hashed} WHERE {_where(topic, 1, 15)}"
    assert caught(rewrite) == (12, "changed")  # the batch 12..19 is named, not the record
    # The chain itself: a batch's record count edited to hide a removal.
    assert caught(f"UPDATE {chain} SET records = 7 WHERE partition = 1 AND first_offset = 12") == (
        12,
        "changed",
    )
    assert caught(f"DELETE FROM {table} WHERE {_where(topic, 1, 7)}") == (7, "removed")
    # The end of the chain too: the heads the last batch recorded name it.
    assert caught(f"DELETE FROM {table} WHERE {_where(topic, 1, 19)}") == (19, "removed")
    copy = f"SELECT * FROM {table} WHERE {_where(topic, 1, 3)}"
    forged = f"INSERT INTO {table} SELECT topic, partition, offset, key, CAST('forged' AS BINARY), kafka_timestamp, ingest_time, kafka_date, record_hash FROM ({copy})"
    assert caught(forged) == (3, "inserted")
    appended = f"INSERT INTO {table} SELECT topic, partition, 20, key, value, kafka_timestamp, ingest_time, kafka_date, record_hash FROM ({copy})"
    assert caught(appended) == (20, "inserted")

    assert verify_store.verify(spark, local).intact
    capsys.readouterr()
    spark.sql(f"DELETE FROM {table} WHERE {_where(topic, 0, 2)}")
    assert verify_store.run(spark, verify_store.VerifyRun(local)) == 1
    out = capsys.readouterr().out
    assert "NOT intact: 1 of 2 chains broken" in out and f"{topic}[0] offset 2: removed" in out
