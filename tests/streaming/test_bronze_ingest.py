"""Generated events and hostile values land in bronze exactly as Kafka holds them."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from retailstream.config import LakeSettings, Settings
from retailstream.io import datasets
from retailstream.io.delta import read_table
from retailstream.io.truth import TruthWriter, truth_dir
from retailstream.jobs import ingest_events, init_world
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.publish import publish
from retailstream.kafka.topics import create_topics, describe_topics
from retailstream.world import KEY_FIELDS, EventGenerator, build_world

MALFORMED = {"invalid_json", "truncated", "non_utf8", "empty"}


def _with_lake(settings: Settings, lake: Path) -> Settings:
    return settings.model_copy(update={"lake": LakeSettings(root=lake)})


def _kafka_coordinates(settings: Settings) -> set[tuple[str, int, int]]:
    infos = describe_topics(settings.kafka.bootstrap, sorted(settings.kafka.topics))
    return {
        (info.name, part.partition, offset)
        for info in infos
        for part in info.partitions
        for offset in range(part.earliest, part.latest)
    }


def test_world_init_writes_the_same_world_for_the_same_seed(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    local = _with_lake(settings, tmp_path / "lake")
    counts = init_world.write_world(spark, local, seed=5, scale="small")
    expected = build_world(5, "small").tables()
    assert counts == {name: len(frame) for name, frame in expected.items()}
    stores = read_table(spark, datasets.reference_table(local, "stores"))
    assertDataFrameEqual(stores, spark.createDataFrame(expected["stores"]))
    assert {"city", "region", "lat", "lon"} <= set(stores.columns)
    assert json.loads(datasets.world_spec_path(local).read_text())["seed"] == 5


def test_generated_events_are_ingested_once_with_keys_and_defects_located(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    local = _with_lake(settings, tmp_path / "lake")
    create_topics(local.kafka.bootstrap, local.kafka.topics)
    generator = EventGenerator(
        build_world(3, "small"),
        seed=3,
        start=datetime(2026, 6, 1, tzinfo=UTC),
        sim_seconds_per_event=1.0,
    )
    report = publish(
        generator, producer(local.kafka.bootstrap), TruthWriter(local.lake.root),
        rate=None, max_events=6000, max_seconds=None, batch_size=1000,
    )  # fmt: skip
    assert report.events == 6000
    assert set(report.per_topic) == set(KEY_FIELDS), "all six topics are produced"

    ingest_events.run(spark, StreamRun(local, available_now=True))
    bronze = read_table(spark, local.lake.table("bronze_events"))
    rows = bronze.select("topic", "partition", "offset", "key", "value").collect()
    coordinates = [(r.topic, r.partition, r.offset) for r in rows]
    assert len(coordinates) == len(set(coordinates)), "no record twice"
    assert set(coordinates) == _kafka_coordinates(local), "every record Kafka holds"

    by_coordinate = {(r.topic, r.partition, r.offset): r for r in rows}
    for row in rows[:3000]:
        try:
            event = json.loads(bytes(row.value))
        except (ValueError, TypeError):
            continue
        if isinstance(event, dict) and KEY_FIELDS[row.topic] in event:
            assert bytes(row.key).decode() == str(event[KEY_FIELDS[row.topic]])

    defect_files = list(truth_dir(local.lake.root, "defects").glob("*.parquet"))
    assert len(defect_files) == 1, "a short run writes one ground-truth file per table"
    defects = spark.read.parquet(str(truth_dir(local.lake.root, "defects"))).collect()
    assert defects, "the default defect share produces defects"
    assert len(defects) == len(pd.read_parquet(defect_files[0])), "pandas reads it as well"
    for defect in defects:
        record = by_coordinate[(defect.topic, defect.partition, defect.offset)]
        if defect.kind in MALFORMED:
            with pytest.raises((ValueError, UnicodeDecodeError)):
                json.loads(bytes(record.value or b"").decode("utf-8"))


def test_hostile_values_are_stored_raw(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    local = _with_lake(settings, tmp_path / "lake")
    create_topics(local.kafka.bootstrap, local.kafka.topics)
    values = {
        b"invalid": b'{"event_id": "x",, }',
        b"binary": bytes(range(256)) + os.urandom(1024),
        b"empty": b"",
        b"huge": b'{"blob": "' + b"x" * (5 * 1024 * 1024) + b'"}',
        b"truncated": b'{"event_id": "abc", "sku": "SK',
    }
    client = producer(local.kafka.bootstrap)
    for key, value in values.items():
        client.produce("shop.orders", key=key, value=value)
    client.produce("shop.orders", key=b"tombstone", value=None)
    flush_or_fail(client)

    ingest_events.run(spark, StreamRun(local, available_now=True))
    bronze = read_table(spark, local.lake.table("bronze_events")).where("topic = 'shop.orders'")
    stored = {bytes(r.key): r.value for r in bronze.select("key", "value").collect() if r.key}
    for key, value in values.items():
        assert bytes(stored[key]) == value, key
    assert stored[b"tombstone"] is None
