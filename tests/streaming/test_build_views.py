"""Gold views: maintained by the stream in several micro-batches, with duplicates
and late events in the input, they equal a rebuild from silver and count what
silver holds. (The serving store's views: test_serving_views.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from retailstream.config import Settings
from retailstream.io import datasets
from retailstream.io.checkpoints import committed_batches
from retailstream.io.datasets import bronze_table, silver_table
from retailstream.io.delta import read_table
from retailstream.jobs import build_views
from support import check_item_ratings, copied_lake

VIEWS = ("item_ratings", "sales_by_region", "trending_items", "inventory_positions")


@pytest.fixture(scope="module")
def streamed(generated_lake: Settings) -> Settings:
    """Gold views built by the stream over two rounds of events (first batch, then merges)."""
    return generated_lake


def gold(spark: SparkSession, settings: Settings, view: str) -> DataFrame:
    return read_table(spark, datasets.gold_table(settings, view))


@pytest.mark.parametrize("view", VIEWS)
def test_a_rebuilt_view_equals_the_streamed_one(
    streamed: Settings, spark: SparkSession, view: str
) -> None:
    streamed_rows = gold(spark, streamed, view)
    assert streamed_rows.count() > 0
    assertDataFrameEqual(build_views.rebuild(spark, streamed, view), streamed_rows)


def test_item_ratings_count_each_valid_rating_once(streamed: Settings, spark: SparkSession) -> None:
    check_item_ratings(
        gold(spark, streamed, "item_ratings").collect(),
        read_table(spark, silver_table(streamed, "ratings")),
    )


def test_duplicates_in_the_stream_are_not_counted_twice(
    streamed: Settings, spark: SparkSession
) -> None:
    bronze = read_table(spark, bronze_table(streamed))
    ratings = bronze.where(F.col("topic") == "shop.ratings")
    distinct_ids = ratings.select(F.get_json_object(F.col("value").cast("string"), "$.event_id"))
    assert ratings.count() > distinct_ids.distinct().count(), "the input has duplicates"
    total_row = gold(spark, streamed, "item_ratings").agg(F.sum("ratings_count")).first()
    assert total_row is not None
    total = total_row[0]
    assert total == read_table(spark, silver_table(streamed, "ratings")).count()


def test_inventory_is_initial_plus_deliveries_minus_sales(
    streamed: Settings, spark: SparkSession
) -> None:
    positions = gold(spark, streamed, "inventory_positions")
    initial = read_table(spark, datasets.reference_table(streamed, "initial_stock"))
    assert positions.count() >= initial.count()
    sold = (
        read_table(spark, silver_table(streamed, "order_lines"))
        .where(F.col("store_id").isNotNull())
        .groupBy("store_id", "sku")
        .agg(F.sum("quantity").alias("expected_sold"))
    )
    checked = positions.join(sold, ["store_id", "sku"], "left").fillna(0, ["expected_sold"])
    assert checked.where(F.col("sold") != F.col("expected_sold")).count() == 0
    assert positions.where(
        F.col("on_hand") != F.col("initial") + F.col("delivered") - F.col("sold")
    ).isEmpty()
    assert positions.where(F.col("delivered") > 0).count() > 0, "some deliveries arrived"
    assert positions.where("low_stock").count() > 0


def test_sales_windows_add_up_to_the_orders(streamed: Settings, spark: SparkSession) -> None:
    sales = gold(spark, streamed, "sales_by_region")
    orders = read_table(spark, silver_table(streamed, "orders")).count()
    totals = sales.agg(F.sum("orders"), F.sum("late_orders")).first()
    assert totals is not None
    assert totals[0] + totals[1] == orders
    assert sales.where(F.col("region").isNull()).isEmpty()


def test_a_batch_counts_once_even_when_replayed(
    streamed: Settings, spark: SparkSession, tmp_path: Path
) -> None:
    lake = copied_lake(streamed, tmp_path)
    checkpoint = build_views.checkpoint(lake)
    last = committed_batches(checkpoint)[-1]
    query_id = json.loads((checkpoint / "metadata").read_text())["id"]
    handler = build_views.GoldBatch(
        lake, build_views.chosen_views(lake), build_views.gold_references(spark, lake),
        lambda: query_id,
    )  # fmt: skip
    silver = {t: read_table(spark, silver_table(lake, t)) for t in build_views.stream_tables()}
    batch = build_views.packed(
        {t: frame.limit(40) for t, frame in silver.items()}  # some of every table
    ).persist()

    def ratings_counted() -> int:
        row = gold(spark, lake, "item_ratings").agg(F.sum("ratings_count")).first()
        assert row is not None
        return row[0]

    counted = ratings_counted()
    handler(batch, last + 1)  # a new batch (the same rows, as if they were new) counts once
    assert ratings_counted() == counted + 40
    after = {v: gold(spark, lake, v).collect() for v in VIEWS}
    handler(batch, last + 1)  # the same batch again, as after a crash before its commit
    for view in VIEWS:
        assertDataFrameEqual(gold(spark, lake, view), after[view])


def test_rebuild_as_of_a_time_leaves_later_events_out(
    streamed: Settings, spark: SparkSession
) -> None:
    ratings = read_table(spark, silver_table(streamed, "ratings"))
    middle_row = ratings.agg(F.percentile_approx("event_time", 0.5)).first()
    assert middle_row is not None
    middle = middle_row[0]
    rebuilt = build_views.rebuild(spark, streamed, "item_ratings", as_of=middle)
    expected = ratings.where(F.col("event_time") <= F.lit(middle)).count()
    rebuilt_total = rebuilt.agg(F.sum("ratings_count")).first()
    assert rebuilt_total is not None
    assert rebuilt_total[0] == expected
