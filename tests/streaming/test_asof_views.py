"""`asof` answers a gold view as it stood at a past time: by Delta time travel while the
version is kept, and after a vacuum by folding the events ingested by then, with the
same answer."""

from __future__ import annotations

from datetime import UTC, timedelta
from pathlib import Path

import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.datasets import gold_table
from retailstream.io.delta import read_table
from retailstream.jobs import asof_views, maintain_lake
from support import copied_lake


def _comparable(rows: pd.DataFrame) -> str:
    """The rows in a fixed order as JSON (documents hold arrays, which compare badly)."""
    return (
        rows.sort_values("sku").reset_index(drop=True).to_json(orient="records", date_format="iso")
    )


def test_the_view_of_day_one_by_time_travel_and_by_fold_after_a_vacuum(
    spark: SparkSession, sample_lake: Settings, tmp_path: Path
) -> None:
    lake = copied_lake(sample_lake, tmp_path, "lake.time_travel_hours=0")
    path = gold_table(lake, "item_ratings")
    history = DeltaTable.forPath(spark, str(path)).history().orderBy("version").collect()
    # The sample runs the views once a day: the first version is day one's.
    day_one = history[0]
    at = day_one["timestamp"].replace(tzinfo=UTC) + timedelta(milliseconds=1)
    then = read_table(spark, path, int(day_one["version"])).toPandas()
    now = read_table(spark, path).toPandas()
    assert now["ratings_count"].sum() > then["ratings_count"].sum() > 0, "day two added ratings"

    travelled = asof_views.answer(spark, lake, "item_ratings", at)
    assert travelled.how == "time travel" and f"version {day_one['version']}" in travelled.detail
    assert _comparable(travelled.rows) == _comparable(then)

    # Every removed file gone: that version cannot be read any more, the events can.
    maintain_lake.maintain(spark, lake, retention_hours=0, only=["gold.item_ratings"])
    folded = asof_views.answer(spark, lake, "item_ratings", at)
    assert folded.how == "fold" and "can no longer be read" in folded.detail
    assert _comparable(folded.rows) == _comparable(then)

    with pytest.raises(UserError, match="unknown view"):
        asof_views.answer(spark, lake, "no_such_view", at)
