"""`audit` traces each micro-batch of a view to the silver versions it read, the Kafka
offset ranges behind them and the view's Delta versions it committed."""

from __future__ import annotations

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.io.datasets import gold_table, silver_table
from retailstream.io.delta import read_table
from retailstream.jobs import audit_views


def test_every_batch_is_traced_to_its_kafka_records_and_gold_versions(
    spark: SparkSession, sample_lake: Settings, capsys: pytest.CaptureFixture
) -> None:
    batches = audit_views.audit(spark, sample_lake, "item_ratings", last=100)
    assert len(batches) >= 2, "the sample runs the views once per simulated day"
    assert [b.committed_at for b in batches] == sorted(b.committed_at for b in batches)

    # The ranges of all batches together are exactly the ratings in silver.
    ratings = read_table(spark, silver_table(sample_lake, "ratings"))
    in_silver = {
        (r["topic"], r["partition"]): (r["first"], r["last"], r["n"])
        for r in ratings.groupBy("topic", "partition")
        .agg(F.min("offset").alias("first"), F.max("offset").alias("last"), F.count("*").alias("n"))
        .collect()
    }
    traced: dict[tuple[str, int], list[int]] = {}
    for batch in batches:
        for r in batch.kafka:
            first, last, n = traced.get((r.topic, r.partition), [r.first, r.last, 0])
            traced[(r.topic, r.partition)] = [min(first, r.first), max(last, r.last), n + r.records]
    assert {k: tuple(v) for k, v in traced.items()} == in_silver

    # Each batch that read new ratings committed a version of the view while it ran,
    # and every version of the view was committed by one of them.
    versions = {
        int(h["version"])
        for h in DeltaTable.forPath(spark, str(gold_table(sample_lake, "item_ratings")))
        .history()
        .collect()
    }
    with_records = [b for b in batches if b.kafka]
    assert with_records and all(b.gold_versions for b in with_records)
    assert {v for b in batches for v in b.gold_versions} == versions

    assert audit_views.run(spark, audit_views.AuditRun(sample_lake, "item_ratings", last=1)) == 0
    out = capsys.readouterr().out
    assert out.startswith("item_ratings: the last 1 committed batches")
    assert "shop.ratings[" in out or "no new records" in out
