"""Enrichment: shipments meet the weather and world events they departed into.

The generator records, per shipment, the severities it used to decide the
delay; the enriched table, built by stream-stream joins from the events alone,
must find the same values.
"""

from __future__ import annotations

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.io.datasets import silver_table
from retailstream.io.delta import read_table

# The lake is the run's `shipped_lake` (tests/streaming/conftest.py).


def test_departures_carry_the_weather_and_world_events_at_departure(
    shipped_lake: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, truth = shipped_lake
    rows = read_table(spark, silver_table(settings, "shipments_enriched")).collect()
    departed = read_table(spark, silver_table(settings, "shipments")).where("status = 'departed'")
    expected = truth.set_index("shipment_id")
    assert len(rows) > 20, "enough departures to compare"
    ids = [r.shipment_id for r in rows]
    assert len(ids) == len(set(ids)), "one row per departed shipment"
    # Departures whose weather bucket has not been reported yet (the stream's
    # last minutes) may still be waiting in the join's state.
    assert len(rows) >= departed.count() - 12
    for row in rows:
        known = expected.loc[row.shipment_id]
        assert row.origin_weather_severity == known.origin_weather_severity, row.shipment_id
        assert row.destination_weather_severity == known.destination_weather_severity, (
            row.shipment_id
        )
        assert row.world_event_severity == known.world_event_severity, row.shipment_id
        assert row.origin_region and row.destination_region and row.distance_km > 0


def test_orders_clicks_and_lines_carry_their_reference_data(
    shipped_lake: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, _ = shipped_lake
    orders = read_table(spark, silver_table(settings, "orders_enriched"))
    assert orders.count() == read_table(spark, silver_table(settings, "orders")).count()
    in_store = orders.where(F.col("store_id").isNotNull())
    assert in_store.where(F.col("store_region").isNull()).count() == 0
    assert in_store.count() > 0
    lines = read_table(spark, silver_table(settings, "order_lines_enriched"))
    assert lines.where(F.col("category").isNull()).count() == 0
    clicks = read_table(spark, silver_table(settings, "clickstream_enriched"))
    assert clicks.count() == read_table(spark, silver_table(settings, "clickstream")).count()
    assert clicks.where(F.col("category").isNull()).count() == 0
