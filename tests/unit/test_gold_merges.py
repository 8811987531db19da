"""The gold views' merge rules: a view computed from two halves of its facts and merged
by `views.gold_merges` equals the view computed from all of them at once, which is what
lets the gold query fold batch by batch and still equal `views rebuild-gold`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from retailstream.config import ViewsSettings
from retailstream.views import definitions
from retailstream.views.gold_merges import GoldMerge, keyed_merges, trending_activity
from unit.quality.silver_rows import clean_rows, reference_tables, silver_frame

SETTINGS = ViewsSettings(last_ratings=3, trending_minutes=5)
TABLES = ("ratings", "orders", "shipments", "clickstream")


def _update(merge: GoldMerge, column: str) -> Column:
    """`merge`'s update of `column`, a SQL expression over `t` and `s`."""
    update = merge.updates[column]
    assert isinstance(update, str), "the gold merges update by SQL expressions"
    return F.expr(update).alias(column)


def merged(stored: DataFrame, batch: DataFrame, merge: GoldMerge) -> DataFrame:
    """What Delta's MERGE of `batch` into `stored` by `merge`'s rule leaves, in frames."""
    t, s = stored.alias("t"), batch.alias("s")
    on = [F.col(f"t.{k}").eqNullSafe(F.col(f"s.{k}")) for k in merge.key]
    condition = on[0]
    for clause in on[1:]:
        condition = condition & clause
    both = t.join(s, condition, "inner").select(
        *(_update(merge, c) if c in merge.updates else F.col(f"t.{c}") for c in stored.columns)
    )
    stored_only = t.join(s, condition, "left_anti")
    batch_only = s.join(t, condition, "left_anti")
    return both.unionByName(stored_only).unionByName(batch_only)


def _with_deliveries(rows: list[dict[str, Any]], stores: list[str]) -> list[dict[str, Any]]:
    """Shipments, every other one delivered to a store (few are, in a short stream)."""
    return [
        {**row, "status": "delivered", "destination_store_id": stores[i % len(stores)]}
        if i % 2 == 0
        else row
        for i, row in enumerate(rows)
    ]


def _again(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**r, "event_id": f"{r['event_id']}-again", "offset": r["offset"] + 10**6} for r in rows
    ]


@pytest.fixture(scope="module")
def halves(spark: SparkSession) -> tuple[dict[str, DataFrame], dict[str, DataFrame]]:
    """Silver frames of each table, split into two interleaved halves; the second also
    repeats ten events of the first under new ids, so that every view's keys recur."""
    rows = clean_rows(per_table=60)
    stores = list(reference_tables()["stores"]["store_id"][:3])
    chosen = {t: list(rows[t]) for t in TABLES}
    chosen["shipments"] = _with_deliveries(chosen["shipments"], stores)
    first = {t: silver_frame(spark, t, r[0::2]) for t, r in chosen.items()}
    second = {t: silver_frame(spark, t, r[1::2] + _again(r[0::2][:10])) for t, r in chosen.items()}
    return first, second


@pytest.fixture(scope="module")
def references(spark: SparkSession) -> dict[str, DataFrame]:
    tables = reference_tables()
    stock = tables["initial_stock"]
    return {
        "products": spark.createDataFrame(tables["products"]),
        "stores": spark.createDataFrame(tables["stores"]),
        # A few stores' stock is plenty, and keeps the frames small.
        "initial_stock": spark.createDataFrame(
            stock[stock["store_id"].isin(tables["stores"]["store_id"][:3])]
        ),
    }


def _union(a: Mapping[str, DataFrame], b: Mapping[str, DataFrame]) -> dict[str, DataFrame]:
    return {t: a[t].unionByName(b[t]) for t in a}


@pytest.mark.parametrize("view", sorted(keyed_merges(SETTINGS)))
def test_two_halves_merged_equal_the_view_of_all_facts(
    view: str, halves: tuple, references: dict[str, DataFrame]
) -> None:
    first, second = halves
    definition = definitions.definitions(SETTINGS)[view]
    assert definition.key is not None, "a keyed view"
    stored = definition.compute(definition.facts(first), references, SETTINGS, None, None)
    batch_facts = definition.facts(second)
    keys = batch_facts.select(*definition.key).distinct()
    batch = definition.compute(batch_facts, references, SETTINGS, keys, None)
    assert batch.count() > 0 and stored.join(batch, list(definition.key)).count() > 0, (
        "the halves share keys, so the rule is exercised"
    )
    whole = definition.compute(
        definition.facts(_union(first, second)), references, SETTINGS, None, None
    )
    assertDataFrameEqual(merged(stored, batch, keyed_merges(SETTINGS)[view]), whole)


def test_trending_ranked_from_merged_minutes_equals_trending_of_all_facts(
    halves: tuple, references: dict[str, DataFrame]
) -> None:
    first, second = halves
    facts = definitions.interest_facts(_union(first, second))
    activity = merged(
        definitions.minute_activity(definitions.interest_facts(first)),
        definitions.minute_activity(definitions.interest_facts(second)),
        trending_activity(),
    )
    newest_row = activity.agg(F.max("minute")).first()
    assert newest_row is not None
    newest = newest_row[0]
    ranked = definitions.rank_trending(activity, references, SETTINGS, newest)
    assert ranked.count() > 0
    assertDataFrameEqual(ranked, definitions.trending_items(facts, references, SETTINGS))
