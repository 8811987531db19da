"""Where else the stock of a shipment predicted late could come from (pure DataFrame functions).

For each sku of an alerted shipment: the nearest other store of the destination's
region that holds enough of it to spare (on hand beyond the low-stock threshold,
from `inventory_positions`); failing that, another distribution centre with a
route to the destination store (the quickest one).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

EARTH_RADIUS_KM = 6371.0


def haversine_km(lat1: Column, lon1: Column, lat2: Column, lon2: Column) -> Column:
    """Great-circle distance in km between two points given in degrees."""
    dlat = F.radians(lat2 - lat1)
    dlon = F.radians(lon2 - lon1)
    a = (
        F.sin(dlat / 2) ** 2
        + F.cos(F.radians(lat1)) * F.cos(F.radians(lat2)) * F.sin(dlon / 2) ** 2
    )
    return F.lit(2 * EARTH_RADIUS_KM) * F.asin(F.sqrt(a))


def alerted_lines(alerts: DataFrame, shipments: DataFrame) -> DataFrame:
    """(shipment_id, origin_dc_id, destination_store_id, sku, quantity) of each alerted
    shipment, from its departed record in silver shipments."""
    lines = (
        shipments.where(F.col("status") == "departed")
        .select("shipment_id", F.explode("lines").alias("line"))
        .select(
            "shipment_id", F.col("line.sku").alias("sku"), F.col("line.quantity").alias("quantity")
        )
    )
    return alerts.select("shipment_id", "origin_dc_id", "destination_store_id").join(
        lines, "shipment_id"
    )


def nearby_stores(
    lines: DataFrame, positions: DataFrame, stores: DataFrame, low_stock_threshold: int
) -> DataFrame:
    """The nearest store of the destination's region with `quantity` to spare, per line:
    (shipment_id, sku, from_store_id, distance_km, spare)."""
    destination = stores.select(
        F.col("store_id").alias("destination_store_id"),
        F.col("region").alias("d_region"),
        F.col("lat").alias("d_lat"),
        F.col("lon").alias("d_lon"),
    )
    other = stores.select(
        F.col("store_id").alias("from_store_id"),
        F.col("region").alias("d_region"),
        F.col("lat").alias("o_lat"),
        F.col("lon").alias("o_lon"),
    )
    stock = positions.select(
        F.col("store_id").alias("from_store_id"),
        "sku",
        (F.col("on_hand") - F.lit(low_stock_threshold)).alias("spare"),
    )
    candidates = (
        lines.join(F.broadcast(destination), "destination_store_id")
        .join(F.broadcast(other), "d_region")
        .where(F.col("from_store_id") != F.col("destination_store_id"))
        .join(stock, ["from_store_id", "sku"])
        .where(F.col("spare") >= F.col("quantity"))
        .withColumn(
            "distance_km",
            haversine_km(F.col("d_lat"), F.col("d_lon"), F.col("o_lat"), F.col("o_lon")),
        )
    )
    nearest = Window.partitionBy("shipment_id", "sku").orderBy("distance_km", "from_store_id")
    return (
        candidates.withColumn("n", F.row_number().over(nearest))
        .where(F.col("n") == 1)
        .select("shipment_id", "sku", "from_store_id", "distance_km", "spare")
    )


def other_centres(lines: DataFrame, routes: DataFrame) -> DataFrame:
    """The quickest route to the destination store from another distribution centre, per
    shipment: (shipment_id, from_dc_id, lead_time_hours)."""
    shipments = lines.select("shipment_id", "origin_dc_id", "destination_store_id").distinct()
    options = routes.select(
        F.col("origin_dc_id").alias("from_dc_id"), "destination_store_id", "lead_time_hours"
    )
    quickest = Window.partitionBy("shipment_id").orderBy("lead_time_hours", "from_dc_id")
    return (
        shipments.join(F.broadcast(options), "destination_store_id")
        .where(F.col("from_dc_id") != F.col("origin_dc_id"))
        .withColumn("n", F.row_number().over(quickest))
        .where(F.col("n") == 1)
        .select("shipment_id", "from_dc_id", "lead_time_hours")
    )


def suggestions(
    lines: DataFrame,
    positions: DataFrame,
    stores: DataFrame,
    routes: DataFrame,
    low_stock_threshold: int,
) -> DataFrame:
    """One suggestion per alerted line: (shipment_id, sku, quantity, source_kind, source_id,
    distance_km, lead_time_hours); source_kind is `store`, `distribution_centre` or `none`."""
    near = nearby_stores(lines, positions, stores, low_stock_threshold)
    centre = other_centres(lines, routes)
    joined = lines.join(near, ["shipment_id", "sku"], "left").join(centre, "shipment_id", "left")
    kind = (
        F.when(F.col("from_store_id").isNotNull(), F.lit("store"))
        .when(F.col("from_dc_id").isNotNull(), F.lit("distribution_centre"))
        .otherwise(F.lit("none"))
    )
    return joined.select(
        "shipment_id",
        "sku",
        "quantity",
        kind.alias("source_kind"),
        F.coalesce("from_store_id", "from_dc_id").alias("source_id"),
        F.when(F.col("from_store_id").isNotNull(), F.col("distance_km")).alias("distance_km"),
        F.when(F.col("from_store_id").isNull(), F.col("lead_time_hours")).alias("lead_time_hours"),
    )
