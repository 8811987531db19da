"""Enrich: silver events joined with reference data and with each other.

Reads (as streams): `<lake>/silver/{clickstream,orders,order_lines,shipments,weather}`;
as tables: the reference data and `<lake>/silver/world_events`.
Writes:
- `silver/clickstream_enriched`: clicks + product category, brand, price;
- `silver/orders_enriched`: orders + store city, region, country, location;
- `silver/order_lines_enriched`: lines + product category, brand, season, revenue;
- `silver/shipments_enriched`: one row per departed shipment with its route's
  regions, distance and carrier reliability, the weather observed in the origin
  and destination regions at departure (a time-bounded stream-stream join with
  watermarks) and the world events active there (severity, kinds): what the
  disruption model learns from.
Each query has its own checkpoint `<lake>/_checkpoints/enrich_<name>`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.io import datasets
from retailstream.io.datasets import has_commits, load_references, require_table, silver_table
from retailstream.io.delta import (
    StreamTrigger,
    append_once,
    append_stream,
    foreach_batch_stream,
    read_stream,
    read_table,
)
from retailstream.jobs.interrupts import await_queries
from retailstream.jobs.spec import StreamRun, stream_job
from retailstream.transforms.enrich import (
    add_world_events,
    departures,
    enrich_clickstream,
    enrich_order_lines,
    enrich_orders,
    join_weather,
)

# Event-time slack of the stream-stream join: how late a departure or a weather
# report may arrive and still be matched.
JOIN_WATERMARK = "30 minutes"
ENRICHED = ("clickstream_enriched", "orders_enriched", "order_lines_enriched", "shipments_enriched")
# One query per source table, named and checkpointed after it.
QUERY_NAMES = datasets.ENRICH_QUERIES


def _stream(spark: SparkSession, settings: Settings, table: str) -> DataFrame:
    path = require_table(
        silver_table(settings, table),
        f"silver table {table} does not exist yet: run `retailstream run refine` first",
    )
    return read_stream(spark, path)


def shipments_handler(spark: SparkSession, settings: Settings) -> Callable[[DataFrame, int], None]:
    """Per micro-batch of weather-joined departures: add world events, append once."""

    def handle(batch: DataFrame, batch_id: int) -> None:
        world_events_path = silver_table(settings, "world_events")
        if has_commits(world_events_path):
            world_events = read_table(spark, world_events_path)
        else:
            world_events = spark.createDataFrame(
                [],
                "region string, kind string, severity int, starts_at timestamp, ends_at timestamp",
            )
        enriched = add_world_events(batch, world_events)
        append_once(
            enriched, silver_table(settings, "shipments_enriched"), "enrich_shipments", batch_id
        )

    return handle


def start_all(
    spark: SparkSession,
    settings: Settings,
    trigger: StreamTrigger,
    references: Mapping[str, DataFrame],
) -> list[StreamingQuery]:
    """Start the four enrichment queries; return them."""

    def checkpoint(name: str) -> Path:
        return datasets.checkpoint(settings, f"enrich_{name}")  # QUERY_NAMES

    def simple(name: str, frame: DataFrame) -> StreamingQuery:
        target = f"{name}_enriched"
        return append_stream(
            frame, silver_table(settings, target), checkpoint(name), f"enrich_{name}", trigger
        )

    products, stores = references["products"], references["stores"]
    queries = [
        simple(
            "clickstream", enrich_clickstream(_stream(spark, settings, "clickstream"), products)
        ),
        simple("orders", enrich_orders(_stream(spark, settings, "orders"), stores)),
        simple(
            "order_lines", enrich_order_lines(_stream(spark, settings, "order_lines"), products)
        ),
    ]
    departed = departures(
        _stream(spark, settings, "shipments"),
        references["routes"],
        references["distribution_centres"],
        stores,
        references["carriers"],
    ).withWatermark("departed_at", JOIN_WATERMARK)

    def weather() -> DataFrame:
        return _stream(spark, settings, "weather").withWatermark("event_time", JOIN_WATERMARK)

    with_weather = join_weather(
        join_weather(departed, weather(), "origin"), weather(), "destination"
    )
    queries.append(
        foreach_batch_stream(
            with_weather,
            shipments_handler(spark, settings),
            checkpoint("shipments"),
            "enrich_shipments",
            trigger,
        )
    )
    return queries


def run(spark: SparkSession, cfg: StreamRun) -> int:
    settings = cfg.settings
    references = load_references(spark, settings)
    queries = start_all(
        spark,
        settings,
        cfg.trigger(settings.enrich.trigger_interval),
        references,
    )
    await_queries(*queries)
    print(f"enriched: {', '.join(ENRICHED)}")
    return 0


JOB = stream_job(
    "enrich", __doc__.splitlines()[0], "enrich_events", run, "enrich what silver holds"
)
main = JOB.main
