"""Silver enrichment: events joined with the reference data and with each other (pure).

The same functions serve batch and streaming inputs. Weather reports come
once per region per 10-minute bucket (the generator's and many weather
services' cadence), each a little into its bucket, so "the weather at
departure" is what a reader of the weather topic knew then: the region's
latest observation at or before the departure, the one report of the 10
minutes up to it. An equality on region and a range in event time, which also
lets a stream-stream join drop old state. (The departure's own bucket is not
it: a departure in a bucket's first seconds precedes that bucket's report.)
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

WEATHER_BUCKET_SECONDS = 600
# How long before a departure its region's latest weather report can be (one bucket).
WEATHER_JOIN_BOUND = "interval 10 minutes"


def weather_bucket(timestamp: Column) -> Column:
    """The 10-minute bucket (epoch based) a timestamp falls in."""
    return F.floor(F.unix_seconds(timestamp) / WEATHER_BUCKET_SECONDS)


def enrich_orders(orders: DataFrame, stores: DataFrame) -> DataFrame:
    """Orders with their store's city, region, country and location (null for online orders)."""
    store_columns = stores.select(
        "store_id",
        F.col("city").alias("store_city"),
        F.col("region").alias("store_region"),
        F.col("country").alias("store_country"),
        F.col("lat").alias("store_lat"),
        F.col("lon").alias("store_lon"),
    )
    return orders.drop("lines").join(F.broadcast(store_columns), on="store_id", how="left")


def enrich_order_lines(order_lines: DataFrame, products: DataFrame) -> DataFrame:
    """Order lines with the product's category, brand, season and catalogue price."""
    product_columns = products.select(
        "sku",
        "category",
        "brand",
        "season",
        F.col("price").alias("catalogue_price"),
    )
    return order_lines.join(F.broadcast(product_columns), on="sku", how="left").withColumn(
        "revenue", F.col("quantity") * F.col("unit_price")
    )


def enrich_clickstream(clicks: DataFrame, products: DataFrame) -> DataFrame:
    """Clicks with the product's category, brand and price."""
    product_columns = products.select("sku", "category", "brand", F.col("price").alias("price"))
    return clicks.join(F.broadcast(product_columns), on="sku", how="left")


def departures(
    shipments: DataFrame,
    routes: DataFrame,
    distribution_centres: DataFrame,
    stores: DataFrame,
    carriers: DataFrame,
) -> DataFrame:
    """Departed shipments with their route's regions, distance and carrier reliability."""
    origin = distribution_centres.select(
        F.col("dc_id").alias("origin_dc_id"), F.col("region").alias("origin_region")
    )
    destination = stores.select(
        F.col("store_id").alias("destination_store_id"),
        F.col("region").alias("destination_region"),
    )
    route = routes.select("route_id", "distance_km", "lead_time_hours")
    carrier = carriers.select("carrier_id", F.col("reliability").alias("carrier_reliability"))
    departed = shipments.where(F.col("status") == "departed").select(
        "shipment_id",
        F.col("event_id").alias("departure_event_id"),
        F.col("event_time").alias("departed_at"),
        "route_id",
        "carrier_id",
        "origin_dc_id",
        "destination_store_id",
        "eta",
        F.size("lines").alias("line_count"),
        F.aggregate("lines", F.lit(0), lambda acc, line: acc + line["quantity"]).alias("units"),
    )
    return (
        departed.join(F.broadcast(origin), "origin_dc_id", "left")
        .join(F.broadcast(destination), "destination_store_id", "left")
        .join(F.broadcast(route), "route_id", "left")
        .join(F.broadcast(carrier), "carrier_id", "left")
        .withColumn("departure_bucket", weather_bucket(F.col("departed_at")))
    )


def join_weather(departed: DataFrame, weather: DataFrame, side: str) -> DataFrame:
    """Add `<side>_weather_severity` and `<side>_weather_condition` (side: origin|destination).

    The region's latest observation in the 10 minutes up to and including the
    departure (one report per region per bucket makes it the only one there). An
    inner join bounded in event time: as a stream-stream join both inputs need
    watermarks on `departed_at` and `event_time`.
    """
    report = weather.where(F.col("kind") == "observation").select(
        F.col("region").alias(f"{side}_w_region"),
        F.col("event_time").alias(f"{side}_w_time"),
        F.col("severity").alias(f"{side}_weather_severity"),
        F.col("condition").alias(f"{side}_weather_condition"),
    )
    on = (
        (F.col(f"{side}_region") == F.col(f"{side}_w_region"))
        & (F.col(f"{side}_w_time") > F.col("departed_at") - F.expr(WEATHER_JOIN_BOUND))
        & (F.col(f"{side}_w_time") <= F.col("departed_at"))
    )
    return departed.join(report, on=on, how="inner").drop(f"{side}_w_region", f"{side}_w_time")


def add_world_events(departed: DataFrame, world_events: DataFrame) -> DataFrame:
    """Add the highest severity of the world events active at departure in either region
    (0 when none), and their kinds. Batch semantics (world events are announced ahead)."""
    active = world_events.select("region", "kind", "severity", "starts_at", "ends_at")
    matches = departed.select(
        "departure_event_id", "origin_region", "destination_region", "departed_at"
    ).join(
        active,
        on=(
            (
                (active["region"] == F.col("origin_region"))
                | (active["region"] == F.col("destination_region"))
            )
            & (active["starts_at"] <= F.col("departed_at"))
            & (F.col("departed_at") < active["ends_at"])
        ),
        how="inner",
    )
    summary = matches.groupBy("departure_event_id").agg(
        F.max("severity").alias("world_event_severity"),
        F.array_sort(F.collect_set("kind")).alias("world_event_kinds"),
    )
    return departed.join(summary, "departure_event_id", "left").select(
        *[c for c in departed.columns],
        F.coalesce("world_event_severity", F.lit(0)).alias("world_event_severity"),
        F.coalesce("world_event_kinds", F.array().cast("array<string>")).alias("world_event_kinds"),
    )
