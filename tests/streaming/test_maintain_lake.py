"""`maintain` compacts and vacuums the lake, and refuses a retention that would delete
files the promised time travel or a stream that is behind still needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from retailstream.config import load_settings
from retailstream.errors import UserError
from retailstream.io.delta import read_table, write_table
from retailstream.jobs import maintain_lake
from support import PROJECT_HOME


def _append(spark: SparkSession, path: Path, first: int, batches: int) -> None:
    for i in range(first, first + batches):
        write_table(spark.createDataFrame([(i, f"row {i}")], "n long, text string"), path)


def _catch_up(spark: SparkSession, source: Path, checkpoint: Path, sink: Path) -> None:
    """A stream reading `source` into `sink`, run until it has read every version."""
    query = (
        spark.readStream.format("delta").load(str(source))
        .writeStream.format("delta")
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start(str(sink))
    )  # fmt: skip
    query.awaitTermination()


def test_retention_is_checked_then_small_files_are_compacted_and_vacuumed(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    settings = load_settings("test", [f"lake.root={root}", "lake.time_travel_hours=0"],
                             home=PROJECT_HOME)  # fmt: skip
    orders, copy = root / "silver" / "orders", root / "gold" / "orders_copy"
    checkpoint = settings.lake.checkpoint("copy_orders")
    _append(spark, orders, 0, 4)
    _catch_up(spark, orders, checkpoint, copy)
    _append(spark, orders, 4, 3)  # versions 4..6: the stream has not read them

    # The stream still needs the files versions 4..6 added: a zero retention is refused.
    with pytest.raises(UserError, match=r"query copy_orders has not read silver\.orders version 4"):
        maintain_lake.maintain(spark, settings, retention_hours=0)
    small_files = len(list(orders.glob("*.parquet")))
    assert small_files >= 7

    # So is one shorter than the time travel promised, whatever the streams need.
    promised = load_settings("test", [f"lake.root={root}", "lake.time_travel_hours=48"],
                             home=PROJECT_HOME)  # fmt: skip
    with pytest.raises(UserError, match=r"time travel is promised for 48 h"):
        maintain_lake.maintain(spark, promised, retention_hours=24)
    assert len(list(orders.glob("*.parquet"))) == small_files, "nothing changed"

    _catch_up(spark, orders, checkpoint, copy)
    done = {m.table: m for m in maintain_lake.maintain(spark, settings, retention_hours=0)}
    assert done["silver.orders"].files_before >= 7 and done["silver.orders"].files_after == 1
    assert len(list(orders.glob("*.parquet"))) == 1, "the small files were vacuumed"
    assert sorted(r["n"] for r in read_table(spark, orders).collect()) == list(range(7))

    # Streams carry on after maintenance: the compaction is no new data for them.
    _append(spark, orders, 7, 1)
    _catch_up(spark, orders, checkpoint, copy)
    assert read_table(spark, copy).count() == 8
    assert maintain_lake.run(spark, maintain_lake.MaintainRun(settings, dry_run=True)) == 0
