"""Checked events -> the facts the serving views fold (pure; batch and stream alike).

A fact is one small record of something a view counts. Every record of a
topic, checked by `quality.verdicts.mark_events`, becomes an array of facts
in one projection, and the array is exploded: one pass over each topic,
whatever the number of views it feeds (orders feed three). All facts share
one schema (`FACT_COLUMNS`), so the topics' facts union into a single frame
that reaches the driver in a single Spark job: `view` says which view a fact
is for, the bronze coordinates (topic, partition, offset) which record it
came from, and the other columns are that view's (null elsewhere).

Only valid records (no `_reasons`) give view facts. Every record, valid or
not, also gives a `_seen` fact: a view has *read* a quarantined record too,
and a consistency token for it must resolve. The `_seen` fact carries the
record's event key and Kafka time, which the serving path deduplicates by
in the store.

Times are ISO text in UTC (the session time zone), so they sort as text and
the store holds exactly what the fold compared.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from retailstream.config import ViewsSettings
from retailstream.quality.verdicts import REASONS
from retailstream.views.definitions import COORDINATES
from retailstream.views.folds import ONLINE

SEEN = "_seen"
EVENT_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSS"
MINUTE_FORMAT = "yyyy-MM-dd'T'HH:mm:ss"

# Every column of a fact and its type (a fact leaves the others null).
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
    # `_seen` facts only: what the serving path deduplicates by, in the store.
    "dedup_key": "string",
    "kafka_ms": "bigint",
}

# The silver tables (topics) each serving view is folded from.
VIEW_SOURCES: dict[str, tuple[str, ...]] = {
    "item_ratings": ("ratings",),
    "sales_by_region": ("orders",),
    "trending_items": ("clickstream", "orders"),
    "inventory_positions": ("orders", "shipments"),
}


def fact(view: str, **columns: Column) -> Column:
    """One fact of `view` as a struct of every fact column (the record's coordinates,
    the given columns, nulls for the rest)."""
    fields = []
    for name, kind in FACT_COLUMNS.items():
        if name == "view":
            value = F.lit(view)
        elif name in COORDINATES:
            value = F.col(name)
        else:
            value = columns.get(name, F.lit(None))
        fields.append(value.cast(kind).alias(name))
    return F.struct(*fields)


def _one(item: Column) -> Column:
    return F.array(item)


def _none() -> Column:
    return F.array().cast(f"array<{_fact_type()}>")


def _fact_type() -> str:
    return "struct<" + ", ".join(f"{name}: {kind}" for name, kind in FACT_COLUMNS.items()) + ">"


def _text_time(column: str | Column, pattern: str = EVENT_TIME_FORMAT) -> Column:
    return F.date_format(column, pattern)


def _quantity(line: Column) -> Column:
    return F.coalesce(line["quantity"], F.lit(0))


def _per_line(view: str, **columns: Callable[[Column], Column]) -> Column:
    """A fact of `view` per element of `lines`, its columns computed from the line."""
    return F.coalesce(
        F.transform("lines", lambda line: fact(view, **{k: f(line) for k, f in columns.items()})),
        _none(),
    )


def rating_facts() -> Column:
    return _one(
        fact(
            "item_ratings",
            sku=F.col("sku"),
            customer_id=F.col("customer_id"),
            event_id=F.col("event_id"),
            event_time=_text_time("event_time"),
            stars=F.col("stars"),
        )
    )


def sales_facts(settings: ViewsSettings) -> Column:
    """One fact per order: its window, store (ONLINE for none), cents, units, lateness.

    The lateness rule is per event (arrival in Kafka minus event time), so the
    stream and a rebuild count the same orders whatever the batches were.
    """
    bucket = F.window("event_time", settings.sales_window)
    units = F.aggregate(
        "lines", F.lit(0).cast("bigint"), lambda total, line: total + _quantity(line)
    )
    on_time = F.col("event_lag_seconds") <= F.lit(settings.sales_lateness_s)
    return _one(
        fact(
            "sales_by_region",
            window_start=_text_time(bucket["start"], MINUTE_FORMAT),
            window_end=_text_time(bucket["end"], MINUTE_FORMAT),
            store_id=F.coalesce("store_id", F.lit(ONLINE)),
            cents=F.round(F.coalesce(F.col("total"), F.lit(0.0)) * 100),
            units=F.coalesce(units, F.lit(0)),
            late=~F.coalesce(on_time, F.lit(True)),
        )
    )


def _minute() -> Column:
    return _text_time(F.date_trunc("minute", "event_time"), MINUTE_FORMAT)


def cart_facts() -> Column:
    """A trending fact per add_to_cart click."""
    cart = fact("trending_items", sku=F.col("sku"), minute=_minute(), add_to_cart=F.lit(1))
    return F.when(F.col("action") == "add_to_cart", _one(cart)).otherwise(_none())


def ordered_facts() -> Column:
    """A trending fact per order line: units ordered of its sku in its minute."""
    minute = _minute()
    return _per_line(
        "trending_items",
        sku=lambda line: line["sku"],
        minute=lambda _: minute,
        ordered_units=_quantity,
    )


def sold_facts() -> Column:
    """A stock fact per line of an order placed in a store (online orders move no store stock)."""
    sold = _per_line(
        "inventory_positions",
        store_id=lambda _: F.col("store_id"),
        sku=lambda line: line["sku"],
        sold=_quantity,
    )
    return F.when(F.col("store_id").isNotNull(), sold).otherwise(_none())


def delivered_facts() -> Column:
    """A stock fact per line of a delivered shipment, at its destination store."""
    delivered = _per_line(
        "inventory_positions",
        store_id=lambda _: F.col("destination_store_id"),
        sku=lambda line: line["sku"],
        delivered=_quantity,
    )
    return F.when(F.col("status") == "delivered", delivered).otherwise(_none())


def table_facts(table: str, views: tuple[str, ...], settings: ViewsSettings) -> list[Column]:
    """The fact arrays a valid record of silver `table` gives the serving `views`."""
    wanted = {
        "ratings": [("item_ratings", rating_facts)],
        "orders": [
            ("sales_by_region", lambda: sales_facts(settings)),
            ("trending_items", ordered_facts),
            ("inventory_positions", sold_facts),
        ],
        "clickstream": [("trending_items", cart_facts)],
        "shipments": [("inventory_positions", delivered_facts)],
    }[table]
    return [make() for view, make in wanted if view in views]


def record_facts(table: str, views: tuple[str, ...], settings: ViewsSettings) -> Column:
    """The facts of one checked record of silver `table` (a row of `mark_events`'
    output), as an array: the view facts if it is valid, and its `_seen` fact."""
    valid = F.size(REASONS) == 0
    per_view = table_facts(table, views, settings)
    of_views = F.concat(*per_view) if len(per_view) > 1 else per_view[0]
    seen = fact(SEEN, dedup_key=F.col("_dedup_key"), kafka_ms=F.unix_millis("_wm_time"))
    return F.concat(F.when(valid, of_views).otherwise(_none()), _one(seen))


def facts_of(
    marked: DataFrame, table: str, views: tuple[str, ...], settings: ViewsSettings
) -> DataFrame:
    """Every fact of a checked batch of silver `table` (the output of `mark_events`):
    the view facts of its valid records, and a `_seen` fact per record."""
    every = record_facts(table, views, settings)
    return marked.select(F.explode(every).alias("fact")).select("fact.*")


def fact_messages(
    marked: DataFrame, table: str, views: tuple[str, ...], settings: ViewsSettings
) -> DataFrame:
    """A Kafka message per checked record of silver `table`: its facts as one JSON
    array (`value`), keyed by the record's topic and partition (`key`).

    One message per record, so that a consumer folds all of a record's facts in
    the same transaction, or none of them; one key per source partition, so that
    its records keep their Kafka order whatever the partitions of the topic
    they are written to."""
    key = F.concat_ws(":", F.col("topic"), F.col("partition").cast("string"))
    value = F.to_json(record_facts(table, views, settings))
    return marked.select(key.alias("key"), value.alias("value"))


# A fact with every column null: JSON leaves null columns out.
_NULL_FACT: dict[str, object] = dict.fromkeys(FACT_COLUMNS)


def decode_facts(value: bytes | str) -> list[dict[str, object]]:
    """The facts of one message of `fact_messages`, as the rows `facts_of` gives
    (every column present, nulls as None) (pure)."""
    return [{**_NULL_FACT, **item} for item in orjson.loads(value)]


def seen_facts(records: DataFrame) -> DataFrame:
    """A `_seen` fact per record of `records` (bronze-shaped): what moves a view's
    positions, for every record read, repeats included."""
    return records.select(fact(SEEN).alias("fact")).select("fact.*")


def sources_of(views: tuple[str, ...]) -> tuple[str, ...]:
    """The silver tables `views` are folded from, in a stable order."""
    return tuple(dict.fromkeys(t for v in views for t in VIEW_SOURCES[v]))
