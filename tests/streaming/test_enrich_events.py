"""Enrichment: shipments meet the weather and world events they departed into.

The generator records, per shipment, the severities it used to decide the
delay; the enriched table, built by stream-stream joins from the events alone,
must find the same values.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.io.delta import read_table
from retailstream.jobs import enrich_events, ingest_events, init_world, refine_events
from retailstream.jobs.refine_events import silver_table
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics
from retailstream.world import DefectRates, EventGenerator, build_world
from support import own_pipeline

AVAILABLE_NOW = argparse.Namespace(available_now=True)
SEED = 8


@pytest.fixture(scope="module")
def enriched(
    tmp_path_factory: pytest.TempPathFactory, spark: SparkSession
) -> Iterator[tuple[Settings, pd.DataFrame]]:
    with own_pipeline(tmp_path_factory.mktemp("enrich")) as settings:
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        init_world.write_world(spark, settings, SEED, "small")
        generator = EventGenerator(
            build_world(SEED, "small"),
            SEED,
            datetime(2026, 4, 6, 6, 0, tzinfo=UTC),
            1.5,
            DefectRates.none(),
        )
        client = producer(settings.kafka.bootstrap)
        truth = []
        for _ in range(4):
            batch = generator.next_batch(5000)
            for record, emitted in zip(batch.records, batch.emit_times_ms, strict=True):
                client.produce(record.topic, key=record.key, value=record.value, timestamp=emitted)
            truth.append(batch.truth_frames()["shipment_truth"])
        flush_or_fail(client)
        ingest_events.run(spark, settings, AVAILABLE_NOW)
        refine_events.run(spark, settings, AVAILABLE_NOW)
        enrich_events.run(spark, settings, AVAILABLE_NOW)
        yield settings, pd.concat(truth, ignore_index=True)


def test_departures_carry_the_weather_and_world_events_at_departure(
    enriched: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, truth = enriched
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
    enriched: tuple[Settings, pd.DataFrame], spark: SparkSession
) -> None:
    settings, _ = enriched
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
