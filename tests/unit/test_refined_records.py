"""Refine's one plan over every table, on a small static bronze frame: each event once,
split into silver rows, quarantine rows and per-table counts that agree."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from retailstream.jobs.refine_events import (
    quarantine_rows,
    refined_records,
    silver_rows,
    tally,
)
from retailstream.quality.expectations import known_frames
from retailstream.quality.suites import load_suites
from retailstream.schemas import QUARANTINE_SCHEMA, silver_schema

BRONZE_DDL = (
    "topic string, partition int, offset long, key binary, value binary, kafka_timestamp timestamp"
)
KAFKA_TIME = datetime(2026, 6, 1, 12, 0, 5)
TABLES = ("clickstream", "ratings")


def _rating(event_id: str, stars: int) -> bytes:
    return json.dumps(
        {
            "event_id": event_id,
            "event_type": "item_rated",
            "schema_version": 1,
            "event_time": "2026-06-01T12:00:00.000Z",
            "customer_id": "C-0000001",
            "sku": "SKU-000001",
            "stars": stars,
        }
    ).encode()


def test_a_batch_splits_into_silver_quarantine_and_counts(
    spark: SparkSession, project_home: Path, tmp_path: Path
) -> None:
    suites = load_suites(project_home / "conf" / "expectations")
    needed = {s.key for t in TABLES for s in suites[t].value_set_sources()}
    reference = {"customers.customer_id": ["C-0000001"], "products.sku": ["SKU-000001"]}
    known = known_frames(spark, {key: reference.get(key, ["x"]) for key in needed})
    good, too_many_stars = "a" * 32, "b" * 32
    rows = [
        ("shop.ratings", 0, 0, b"k", _rating(good, 4), KAFKA_TIME),
        ("shop.ratings", 0, 1, b"k", _rating(good, 4), KAFKA_TIME),  # the same event again
        ("shop.ratings", 1, 0, b"k", _rating(too_many_stars, 9), KAFKA_TIME),
        ("shop.clickstream", 2, 7, b"k", b'{"event_id": ', KAFKA_TIME),
    ]
    # Deduplication within a watermark runs on streams only: the rows are read as one.
    spark.createDataFrame(rows, BRONZE_DDL).write.parquet(str(tmp_path / "bronze"))
    bronze = spark.readStream.schema(BRONZE_DDL).parquet(str(tmp_path / "bronze"))
    batches: list[dict] = []

    def handle(refined: DataFrame, batch_id: int) -> None:
        refined = refined.persist()
        quarantine = quarantine_rows(refined, batch_id)
        silver = {t: silver_rows(refined, t) for t in TABLES}
        batches.append(
            {
                "counted": tally(refined),
                "silver_columns": {t: frame.columns for t, frame in silver.items()},
                "silver": {t: frame.collect() for t, frame in silver.items()},
                "quarantine_columns": quarantine.columns,
                "quarantine": quarantine.collect(),
            }
        )
        refined.unpersist()

    query = (
        refined_records(bronze, TABLES, "1 hour", suites, known)
        .writeStream.foreachBatch(handle)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .trigger(availableNow=True)
        .start()
    )
    query.awaitTermination()
    [batch] = [b for b in batches if b["counted"]]  # then a no-data batch, if any

    [stars_rule] = [
        e.name
        for e in suites["ratings"].expectations
        if e.columns == ("stars",) and e.type == "expect_column_values_to_be_between"
    ]
    # A value that is not JSON fails to parse, and so every not-null rule after it.
    [broken] = [r for r in batch["quarantine"] if r.table == "clickstream"]
    assert broken.reasons[0] == "invalid_json"
    assert batch["counted"] == {
        "ratings": {"rows": 2, "valid": 1, "quarantined": 1, "by_reason": {stars_rule: 1}},
        "clickstream": {
            "rows": 1,
            "valid": 0,
            "quarantined": 1,
            "by_reason": dict.fromkeys(broken.reasons, 1),
        },
    }

    assert batch["silver_columns"] == {t: [f.name for f in silver_schema(t).fields] for t in TABLES}
    assert batch["silver"]["clickstream"] == []
    assert [(r.event_id, r.stars) for r in batch["silver"]["ratings"]] == [(good, 4)]
    assert batch["quarantine_columns"] == QUARANTINE_SCHEMA.fieldNames()
    assert sorted(
        (r.table, r.partition, r.offset, r.event_id, r.reasons, r.refine_batch_id)
        for r in batch["quarantine"]
    ) == [
        ("clickstream", 2, 7, None, broken.reasons, 0),
        ("ratings", 1, 0, too_many_stars, [stars_rule], 0),
    ]
