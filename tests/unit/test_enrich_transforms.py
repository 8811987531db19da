"""Enrichment transforms on small in-memory frames: which weather report a departure
meets, and the world events active at departure."""

from __future__ import annotations

from datetime import datetime

from pyspark.sql import DataFrame, SparkSession

from retailstream.transforms.enrich import add_world_events, join_weather

WEATHER = "region string, kind string, event_time timestamp, severity int, condition string"


def _departures(spark: SparkSession, *times: str) -> DataFrame:
    rows = [(f"SH-{i}", "nordics", datetime.fromisoformat(t)) for i, t in enumerate(times)]
    return spark.createDataFrame(
        rows, "shipment_id string, origin_region string, departed_at timestamp"
    )


def _severities(frame: DataFrame) -> dict[str, int]:
    return {r.shipment_id: r.origin_weather_severity for r in frame.collect()}


def test_a_departure_meets_the_latest_report_at_or_before_it(spark: SparkSession) -> None:
    # Nordics reports a few seconds into each 10-minute bucket.
    weather = spark.createDataFrame(
        [
            ("nordics", "observation", datetime(2026, 1, 7, 20, 50, 7), 0, "clear"),
            ("nordics", "observation", datetime(2026, 1, 7, 21, 0, 7), 2, "snow"),
            ("nordics", "alert", datetime(2026, 1, 7, 21, 0, 8), 4, "storm"),  # not a report
            ("iberia", "observation", datetime(2026, 1, 7, 21, 0, 1), 5, "storm"),
        ],
        WEATHER,
    )
    departed = _departures(
        spark,
        "2026-01-07T21:00:03",  # in the 21:00 bucket, before its report: still 20:50's
        "2026-01-07T21:00:07",  # the report's own instant
        "2026-01-07T21:09:59",
        "2026-01-07T20:50:00",  # nothing reported in the 10 minutes before: no match
    )
    joined = join_weather(departed, weather, "origin")
    assert _severities(joined) == {"SH-0": 0, "SH-1": 2, "SH-2": 2}
    assert {r.origin_weather_condition for r in joined.collect()} == {"clear", "snow"}
    assert "origin_w_time" not in joined.columns and "origin_w_region" not in joined.columns


def test_world_events_active_at_departure_give_their_highest_severity(
    spark: SparkSession,
) -> None:
    departed = spark.createDataFrame(
        [
            ("SH-1", "E-1", "nordics", "iberia", datetime(2026, 1, 7, 12)),
            ("SH-2", "E-2", "nordics", "iberia", datetime(2026, 1, 9, 12)),
        ],
        "shipment_id string, departure_event_id string, origin_region string, "
        "destination_region string, departed_at timestamp",
    )
    events = spark.createDataFrame(
        [
            ("nordics", "strike", 2, datetime(2026, 1, 7), datetime(2026, 1, 8)),
            ("iberia", "port_closure", 3, datetime(2026, 1, 7, 6), datetime(2026, 1, 7, 18)),
            ("iberia", "festival", 5, datetime(2026, 1, 8), datetime(2026, 1, 9)),  # ended
        ],
        "region string, kind string, severity int, starts_at timestamp, ends_at timestamp",
    )
    rows = {r.shipment_id: r for r in add_world_events(departed, events).collect()}
    assert rows["SH-1"].world_event_severity == 3
    assert sorted(rows["SH-1"].world_event_kinds) == ["port_closure", "strike"]
    assert rows["SH-2"].world_event_severity == 0 and rows["SH-2"].world_event_kinds == []
