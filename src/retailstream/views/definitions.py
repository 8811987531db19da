"""The gold views as pure functions of silver facts and reference data.

A view is computed in two steps:

1. `facts(silver)`: the silver rows a view is made of, one shape per view,
   carrying the view's key columns and the bronze coordinates (topic,
   partition, offset) that say which Kafka records the view has seen;
2. `compute(facts, references, keys)`: the view rows of those facts. Given
   `keys` (the keys a micro-batch touched), reference rows are cut to them
   (inventory's initial stock), so a batch's rows are those of its keys only.

The gold query computes each micro-batch's rows from that batch's facts and
MERGEs them into the stored rows (`views.gold_merges`); `views rebuild-gold`
computes from every stored fact at once. Both give the same rows, because
the merges only add counts and sums and keep the newest N.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from retailstream.config import Settings, ViewsSettings
from retailstream.errors import UserError
from retailstream.transforms.aggregate import aggregate_value
from retailstream.views.folds import ONLINE  # the store_id of orders placed online (no store)

COORDINATES = ("topic", "partition", "offset")
STARS = (1, 2, 3, 4, 5)


class ComputeView(Protocol):
    """A view's rows from its facts: only those of `keys` when given, as of `as_of`."""

    def __call__(
        self,
        facts: DataFrame,
        references: Mapping[str, DataFrame],
        settings: ViewsSettings,
        keys: DataFrame | None = None,
        as_of: datetime | None = None,
    ) -> DataFrame: ...


@dataclass(frozen=True)
class ViewDefinition:
    """What the views job needs to know about a view.

    `key` None: the view is recomputed whole on every refresh (a top-K).
    `references` are the reference tables `compute` reads.
    """

    name: str
    key: tuple[str, ...] | None
    sources: tuple[str, ...]
    references: tuple[str, ...]
    facts: Callable[[Mapping[str, DataFrame]], DataFrame]
    compute: ComputeView


def _with_coordinates(frame: DataFrame, *columns: Column | str) -> DataFrame:
    return frame.select(*COORDINATES, *columns)


# ---------------------------------------------------------------------------
# item_ratings: the CQRS read model of the "rate item" command


def rating_facts(silver: Mapping[str, DataFrame]) -> DataFrame:
    return _with_coordinates(
        silver["ratings"], "sku", "event_time", "event_id", "customer_id", "stars"
    )


def item_ratings(
    facts: DataFrame,
    references: Mapping[str, DataFrame],
    settings: ViewsSettings,
    keys: DataFrame | None = None,
    as_of: datetime | None = None,
) -> DataFrame:
    """One document per rated item: average, count, 1–5 histogram, newest ratings first."""
    newest = F.slice(
        F.sort_array(
            F.collect_list(F.struct("event_time", "event_id", "customer_id", "stars")), asc=False
        ),
        1,
        max(settings.last_ratings, 1),
    )
    per_item = facts.groupBy("sku").agg(
        F.count("*").alias("ratings_count"),
        F.round(F.avg("stars"), 4).alias("average_stars"),
        *(F.count_if(F.col("stars") == s).alias(f"_stars_{s}") for s in STARS),
        newest.alias("_newest"),
    )
    last = F.transform(
        "_newest",
        lambda r: F.struct(
            r["event_id"].alias("event_id"),
            r["customer_id"].alias("customer_id"),
            r["stars"].alias("stars"),
            r["event_time"].alias("event_time"),
        ),
    )
    if settings.last_ratings == 0:
        last = F.slice(last, 1, 0)
    products = references["products"].select("sku", "name", "category")
    return per_item.join(products, "sku", "left").select(
        "sku",
        "name",
        "category",
        F.col("ratings_count").cast("long").alias("ratings_count"),
        "average_stars",
        F.create_map(*(x for s in STARS for x in (F.lit(str(s)), F.col(f"_stars_{s}")))).alias(
            "histogram"
        ),
        last.alias("last_ratings"),
    )


# ---------------------------------------------------------------------------
# sales_by_region: revenue, orders and units per store and one-minute window


def order_facts(silver: Mapping[str, DataFrame], window: str) -> DataFrame:
    orders = silver["orders"]
    bucket = F.window("event_time", window)
    units = F.aggregate(
        "lines", F.lit(0), lambda total, line: total + F.coalesce(line["quantity"], F.lit(0))
    )
    return _with_coordinates(
        orders,
        bucket["start"].alias("window_start"),
        bucket["end"].alias("window_end"),
        F.coalesce("store_id", F.lit(ONLINE)).alias("store_id"),
        "total",
        units.cast("long").alias("units"),
        "event_lag_seconds",
        "event_time",
    )


def sales_by_region(
    facts: DataFrame,
    references: Mapping[str, DataFrame],
    settings: ViewsSettings,
    keys: DataFrame | None = None,
    as_of: datetime | None = None,
) -> DataFrame:
    """Per store and window: revenue, orders, units of the orders that arrived in
    time, and how many arrived later than `sales_lateness_s` (left out of the sums).

    The lateness rule is per event (arrival in Kafka minus event time), so the
    stream and a rebuild count the same orders whatever the micro-batches were.
    """
    on_time = F.col("event_lag_seconds") <= F.lit(settings.sales_lateness_s)
    counted = F.coalesce(on_time, F.lit(True))
    per_store = facts.groupBy("window_start", "window_end", "store_id").agg(
        F.round(F.sum(F.when(counted, F.col("total")).otherwise(0.0)), 2).alias("revenue"),
        F.count_if(counted).cast("long").alias("orders"),
        F.sum(F.when(counted, F.col("units")).otherwise(0)).cast("long").alias("units"),
        F.count_if(~counted).cast("long").alias("late_orders"),
    )
    stores = references["stores"].select("store_id", "city", "region", "country", "lat", "lon")
    return per_store.join(stores, "store_id", "left").select(
        "window_start",
        "window_end",
        F.coalesce("region", F.when(F.col("store_id") == ONLINE, F.lit("online"))).alias("region"),
        "store_id",
        "city",
        "country",
        "lat",
        "lon",
        "revenue",
        "orders",
        "units",
        "late_orders",
    )


# ---------------------------------------------------------------------------
# trending_items: add-to-cart and order velocity over the last minutes, per category


def interest_facts(silver: Mapping[str, DataFrame]) -> DataFrame:
    carts = _with_coordinates(
        silver["clickstream"].where(F.col("action") == "add_to_cart"),
        "sku",
        "event_time",
        F.lit(1).cast("long").alias("add_to_cart"),
        F.lit(0).cast("long").alias("ordered_units"),
    )
    lines = _with_coordinates(
        silver["orders"].select(*COORDINATES, "event_time", F.explode("lines").alias("line")),
        F.col("line.sku").alias("sku"),
        "event_time",
        F.lit(0).cast("long").alias("add_to_cart"),
        F.coalesce(F.col("line.quantity"), F.lit(0)).cast("long").alias("ordered_units"),
    )
    return carts.unionByName(lines)


def minute_activity(facts: DataFrame) -> DataFrame:
    """Carts and units ordered per (minute, sku): what trending_items is ranked from,
    and what the gold query keeps (`gold/trending_activity`) to rank without history."""
    return facts.groupBy(F.date_trunc("minute", "event_time").alias("minute"), "sku").agg(
        F.sum("add_to_cart").cast("long").alias("add_to_cart"),
        F.sum("ordered_units").cast("long").alias("ordered_units"),
    )


def trending_minutes(newest: datetime, settings: ViewsSettings) -> tuple[datetime, datetime]:
    """[first minute, end) of the `trending_minutes` whole minutes up to `newest`'s,
    as the serving path's `folds.trending_window` has them."""
    newest_minute = newest.replace(second=0, microsecond=0)
    return (
        newest_minute - timedelta(minutes=settings.trending_minutes - 1),
        newest_minute + timedelta(minutes=1),
    )


def rank_trending(
    activity: DataFrame,
    references: Mapping[str, DataFrame],
    settings: ViewsSettings,
    newest: datetime,
) -> DataFrame:
    """The top `trending_top` items per category by carts plus units ordered in the
    trending minutes up to `newest`, from per-minute `activity`."""
    first, end = trending_minutes(newest, settings)
    per_item = (
        activity.where((F.col("minute") >= F.lit(first)) & (F.col("minute") < F.lit(end)))
        .groupBy("sku")
        .agg(
            F.sum("add_to_cart").cast("long").alias("add_to_cart"),
            F.sum("ordered_units").cast("long").alias("ordered_units"),
        )
    )
    products = references["products"].select("sku", "name", "category")
    scored = (
        per_item.join(products, "sku", "inner")
        .withColumn("score", (F.col("add_to_cart") + F.col("ordered_units")).cast("double"))
        .where(F.col("score") > 0)
    )
    rank = F.row_number().over(
        Window.partitionBy("category").orderBy(F.col("score").desc(), F.col("sku"))
    )
    return (
        scored.withColumn("rank", rank)
        .where(F.col("rank") <= settings.trending_top)
        .select(
            "category",
            F.col("rank").cast("int").alias("rank"),
            "sku",
            "name",
            "add_to_cart",
            "ordered_units",
            "score",
            F.lit(first).cast("timestamp").alias("window_start"),
            F.lit(end).cast("timestamp").alias("window_end"),
        )
    )


def trending_items(
    facts: DataFrame,
    references: Mapping[str, DataFrame],
    settings: ViewsSettings,
    keys: DataFrame | None = None,
    as_of: datetime | None = None,
) -> DataFrame:
    """The top items per category by add-to-cart count plus units ordered over the
    `trending_minutes` whole minutes up to `as_of` (default: the newest event seen)."""
    # The newest event time first (one small aggregate, a job of its own), so
    # that the window's scan reads only the last minutes of facts.
    newest = as_of or aggregate_value(facts, F.max("event_time")) or datetime(1970, 1, 1)
    first, end = trending_minutes(newest, settings)
    recent = facts.where((F.col("event_time") >= F.lit(first)) & (F.col("event_time") < F.lit(end)))
    return rank_trending(minute_activity(recent), references, settings, newest)


# ---------------------------------------------------------------------------
# inventory_positions: on hand = initial + deliveries - sales, per store and sku


def stock_movement_facts(silver: Mapping[str, DataFrame]) -> DataFrame:
    sold = _with_coordinates(
        silver["orders"]
        .where(F.col("store_id").isNotNull())
        .select(*COORDINATES, "store_id", "event_time", F.explode("lines").alias("line")),
        "store_id",
        "event_time",
        F.col("line.sku").alias("sku"),
        F.lit(0).cast("long").alias("delivered"),
        F.coalesce(F.col("line.quantity"), F.lit(0)).cast("long").alias("sold"),
    )
    delivered = _with_coordinates(
        silver["shipments"]
        .where(F.col("status") == "delivered")
        .select(
            *COORDINATES, "destination_store_id", "event_time", F.explode("lines").alias("line")
        ),
        F.col("destination_store_id").alias("store_id"),
        "event_time",
        F.col("line.sku").alias("sku"),
        F.coalesce(F.col("line.quantity"), F.lit(0)).cast("long").alias("delivered"),
        F.lit(0).cast("long").alias("sold"),
    )
    return sold.unionByName(delivered)


def inventory_positions(
    facts: DataFrame,
    references: Mapping[str, DataFrame],
    settings: ViewsSettings,
    keys: DataFrame | None = None,
    as_of: datetime | None = None,
) -> DataFrame:
    """Per store and sku: initial stock, units delivered and sold, on hand, low-stock flag.

    Every (store, sku) of the initial stock has a row, moved or not; with
    `keys`, only those keys (the initial stock is cut to them too).
    """
    initial = references["initial_stock"].select(
        "store_id", "sku", F.col("on_hand").cast("long").alias("initial")
    )
    if keys is not None:
        initial = initial.join(keys, ["store_id", "sku"], "left_semi")
    moved = facts.groupBy("store_id", "sku").agg(
        F.sum("delivered").cast("long").alias("delivered"), F.sum("sold").cast("long").alias("sold")
    )
    products = references["products"].select("sku", "name", "category")
    positions = initial.join(moved, ["store_id", "sku"], "full_outer").select(
        "store_id",
        "sku",
        F.coalesce("initial", F.lit(0)).alias("initial"),
        F.coalesce("delivered", F.lit(0)).alias("delivered"),
        F.coalesce("sold", F.lit(0)).alias("sold"),
    )
    on_hand = F.col("initial") + F.col("delivered") - F.col("sold")
    return (
        positions.join(products, "sku", "left")
        .withColumn("on_hand", on_hand)
        .withColumn("low_stock", on_hand <= F.lit(settings.low_stock_threshold))
        .select(
            "store_id",
            "sku",
            "name",
            "category",
            "initial",
            "delivered",
            "sold",
            "on_hand",
            "low_stock",
        )  # fmt: skip
    )


def definitions(settings: ViewsSettings) -> dict[str, ViewDefinition]:
    """Every view the views job can maintain, by name."""
    return {
        d.name: d
        for d in (
            ViewDefinition(
                "item_ratings", ("sku",), ("ratings",), ("products",), rating_facts, item_ratings
            ),
            ViewDefinition(
                "sales_by_region",
                ("window_start", "store_id"),
                ("orders",),
                ("stores",),
                lambda silver: order_facts(silver, settings.sales_window),
                sales_by_region,
            ),
            ViewDefinition(
                "trending_items",
                None,
                ("clickstream", "orders"),
                ("products",),
                interest_facts,
                trending_items,
            ),
            ViewDefinition(
                "inventory_positions",
                ("store_id", "sku"),
                ("orders", "shipments"),
                ("initial_stock", "products"),
                stock_movement_facts,
                inventory_positions,
            ),
        )
    }


def chosen_views(settings: Settings, names: Sequence[str] | None = None) -> list[ViewDefinition]:
    """The views `names` (default: `views.views`); a user error names any unknown one."""
    known = definitions(settings.views)
    names = list(names or settings.views.views)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(f"unknown view {', '.join(unknown)}; views: {', '.join(known)}")
    return [known[n] for n in names]
