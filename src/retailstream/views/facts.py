"""Valid events -> the facts the serving views fold (pure; batch and stream alike).

One narrow row per thing a view counts, all views in one frame, so that a
micro-batch reaches the driver in a single Spark job: `view` says which view
a fact is for, the bronze coordinates (topic, partition, offset) say which
record it came from, and the other columns are that view's (null elsewhere).
Times are ISO text in UTC (the session time zone), so they sort as text and
the store holds exactly what the fold compared.

`seen_offsets` adds a `_seen` row per Kafka partition of the batch with its
highest offset, valid or not: a view has *read* a quarantined record too,
and a consistency token for it must resolve.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from retailstream.config import ViewsSettings
from retailstream.views.folds import ONLINE

COORDINATES = ("topic", "partition", "offset")
SEEN = "_seen"
EVENT_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"
MINUTE_FORMAT = "yyyy-MM-dd'T'HH:mm:ss"

# Every column of the facts frame and its type (a fact leaves the others null).
FACT_COLUMNS = {
    "view": "string",
    "topic": "string",
    "partition": "int",
    "offset": "bigint",
    "sku": "string",
    "store_id": "string",
    "customer_id": "string",
    "event_id": "string",
    "event_time": "string",
    "stars": "int",
    "window_start": "string",
    "window_end": "string",
    "minute": "string",
    "cents": "bigint",
    "units": "bigint",
    "late": "boolean",
    "add_to_cart": "bigint",
    "ordered_units": "bigint",
    "delivered": "bigint",
    "sold": "bigint",
}

# The silver tables (topics) each serving view is folded from.
VIEW_SOURCES: dict[str, tuple[str, ...]] = {
    "item_ratings": ("ratings",),
    "sales_by_region": ("orders",),
    "trending_items": ("clickstream", "orders"),
    "inventory_positions": ("orders", "shipments"),
}


def _shaped(view: str, frame: DataFrame, **columns: Column) -> DataFrame:
    """`frame` as facts of `view`: the given columns, typed, and nulls for the rest."""
    selected = []
    for name, kind in FACT_COLUMNS.items():
        if name == "view":
            value = F.lit(view)
        elif name in COORDINATES:
            value = F.col(name)
        else:
            value = columns.get(name, F.lit(None))
        selected.append(value.cast(kind).alias(name))
    return frame.select(*selected)


def _text_time(column: str | Column, pattern: str = EVENT_TIME_FORMAT) -> Column:
    return F.date_format(column, pattern)


def rating_facts(ratings: DataFrame) -> DataFrame:
    return _shaped(
        "item_ratings",
        ratings,
        sku=F.col("sku"),
        customer_id=F.col("customer_id"),
        event_id=F.col("event_id"),
        event_time=_text_time("event_time"),
        stars=F.col("stars"),
    )


def _line_quantity(line: Column) -> Column:
    return F.coalesce(line["quantity"], F.lit(0))


def sales_facts(orders: DataFrame, settings: ViewsSettings) -> DataFrame:
    """One fact per order: its window, store (ONLINE for none), cents, units, lateness.

    The lateness rule is per event (arrival in Kafka minus event time), so the
    stream and a rebuild count the same orders whatever the batches were.
    """
    bucket = F.window("event_time", settings.sales_window)
    units = F.aggregate(
        "lines", F.lit(0).cast("bigint"), lambda total, line: total + _line_quantity(line)
    )
    on_time = F.col("event_lag_seconds") <= F.lit(settings.sales_lateness_s)
    return _shaped(
        "sales_by_region",
        orders,
        window_start=_text_time(bucket["start"], MINUTE_FORMAT),
        window_end=_text_time(bucket["end"], MINUTE_FORMAT),
        store_id=F.coalesce("store_id", F.lit(ONLINE)),
        cents=F.round(F.coalesce(F.col("total"), F.lit(0.0)) * 100),
        units=F.coalesce(units, F.lit(0)),
        late=~F.coalesce(on_time, F.lit(True)),
    )


def _lines(frame: DataFrame, *columns: str) -> DataFrame:
    return frame.select(*COORDINATES, *columns, F.explode("lines").alias("line"))


def trending_facts(clickstream: DataFrame, orders: DataFrame) -> DataFrame:
    """Carts (one per add_to_cart click) and units ordered, per sku and minute."""
    minute = _text_time(F.date_trunc("minute", "event_time"), MINUTE_FORMAT)
    carts = _shaped(
        "trending_items",
        clickstream.where(F.col("action") == "add_to_cart"),
        sku=F.col("sku"),
        minute=minute,
        add_to_cart=F.lit(1),
    )
    ordered = _shaped(
        "trending_items",
        _lines(orders, "event_time"),
        sku=F.col("line.sku"),
        minute=minute,
        ordered_units=_line_quantity(F.col("line")),
    )
    return carts.unionByName(ordered)


def stock_facts(orders: DataFrame, shipments: DataFrame) -> DataFrame:
    """Units sold from a store (orders with a store) and delivered to one (shipments)."""
    sold = _shaped(
        "inventory_positions",
        _lines(orders.where(F.col("store_id").isNotNull()), "store_id"),
        store_id=F.col("store_id"),
        sku=F.col("line.sku"),
        sold=_line_quantity(F.col("line")),
    )
    delivered = _shaped(
        "inventory_positions",
        _lines(shipments.where(F.col("status") == "delivered"), "destination_store_id"),
        store_id=F.col("destination_store_id"),
        sku=F.col("line.sku"),
        delivered=_line_quantity(F.col("line")),
    )
    return sold.unionByName(delivered)


def view_facts(
    valid: Mapping[str, DataFrame], views: tuple[str, ...], settings: ViewsSettings
) -> DataFrame:
    """The facts of `views` from valid silver-shaped rows by table (the tables they read)."""
    parts = []
    if "item_ratings" in views:
        parts.append(rating_facts(valid["ratings"]))
    if "sales_by_region" in views:
        parts.append(sales_facts(valid["orders"], settings))
    if "trending_items" in views:
        parts.append(trending_facts(valid["clickstream"], valid["orders"]))
    if "inventory_positions" in views:
        parts.append(stock_facts(valid["orders"], valid["shipments"]))
    facts = parts[0]
    for part in parts[1:]:
        facts = facts.unionByName(part)
    return facts


def seen_offsets(records: DataFrame) -> DataFrame:
    """A `_seen` fact per Kafka partition of `records` with its highest offset."""
    latest = records.groupBy("topic", "partition").agg(F.max("offset").alias("offset"))
    return _shaped(SEEN, latest)


def sources_of(views: tuple[str, ...]) -> tuple[str, ...]:
    """The silver tables `views` are folded from, in a stable order."""
    return tuple(dict.fromkeys(t for v in views for t in VIEW_SOURCES[v]))
