"""`explain` on a sample lake: the events behind an item's rating, a store's stock and a
customer's ratings, in order; their running value ends where the served view stands,
and every event names a record the event store holds."""

from __future__ import annotations

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.datasets import bronze_table, gold_table, silver_table
from retailstream.io.delta import read_table
from retailstream.jobs import explain_views
from retailstream.views.definitions import COORDINATES


def _in_event_store(spark: SparkSession, settings: Settings, events: pd.DataFrame) -> int:
    """How many of the events' coordinates the event store holds."""
    wanted = spark.createDataFrame(events[list(COORDINATES)])
    bronze = read_table(spark, bronze_table(settings))
    return wanted.join(bronze, list(COORDINATES), "left_semi").count()


def test_an_items_rating_is_explained_by_its_ratings_in_order(
    spark: SparkSession, sample_lake: Settings, capsys: pytest.CaptureFixture
) -> None:
    top = (
        read_table(spark, gold_table(sample_lake, "item_ratings"))
        .orderBy(F.desc("ratings_count"), "sku")
        .first()
    )
    assert top is not None and top["ratings_count"] >= 3
    found = explain_views.item(spark, sample_lake, top["sku"])
    events = found.events
    assert len(events) == top["ratings_count"]
    assert events["event_time"].is_monotonic_increasing
    assert list(events["running_count"]) == list(range(1, len(events) + 1))
    assert events["running_average"].iloc[-1] == pytest.approx(top["average_stars"], abs=1e-3)
    assert found.agrees("running_average", "average_stars") is True
    assert _in_event_store(spark, sample_lake, events) == len(events)

    cfg = explain_views.ExplainRun(sample_lake, "item", top["sku"], limit=2)
    assert explain_views.run(spark, cfg) == 0
    out = capsys.readouterr().out
    assert f"item {top['sku']}: {len(events)} events" in out and "raise --limit" in out
    assert "differs" not in out


def test_a_stores_stock_is_explained_by_its_sales_and_deliveries(
    spark: SparkSession, sample_lake: Settings
) -> None:
    moved = (
        read_table(spark, gold_table(sample_lake, "inventory_positions"))
        .where((F.col("delivered") > 0) & (F.col("sold") > 0))
        .orderBy("store_id", "sku")
        .first()
    )
    assert moved is not None, "two days move some stock both ways"
    found = explain_views.store(spark, sample_lake, moved["store_id"], moved["sku"])
    events = found.events
    assert events["delivered"].sum() == moved["delivered"] and events["sold"].sum() == moved["sold"]
    assert events["running_on_hand"].iloc[-1] == moved["on_hand"]
    assert found.agrees("running_on_hand", "on_hand") is True
    assert _in_event_store(spark, sample_lake, events) == len(
        events.drop_duplicates(list(COORDINATES))
    )


def test_a_customers_ratings_are_listed_and_unknowns_are_clear_errors(
    spark: SparkSession, sample_lake: Settings
) -> None:
    ratings = read_table(spark, silver_table(sample_lake, "ratings"))
    busiest = ratings.groupBy("customer_id").count().orderBy(F.desc("count"), "customer_id").first()
    assert busiest is not None
    found = explain_views.customer(spark, sample_lake, busiest["customer_id"])
    assert len(found.events) == busiest["count"]
    assert list(found.events["ratings_so_far"]) == list(range(1, busiest["count"] + 1))
    with pytest.raises(UserError, match="no ratings and no item document for sku 'SKU-NOPE'"):
        explain_views.item(spark, sample_lake, "SKU-NOPE")
    with pytest.raises(UserError, match="store 'ST-NOPE' holds no stock"):
        explain_views.store(spark, sample_lake, "ST-NOPE", None)
