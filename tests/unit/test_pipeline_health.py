"""Pipeline health from progress documents, offsets and reports (pure: no Spark, no Kafka)."""

from __future__ import annotations

import json
from pathlib import Path

from retailstream.health.lag import Lag, delta_lag, kafka_lags, records_behind
from retailstream.health.metrics import exposition
from retailstream.health.progress import (
    QueryReport,
    query_report,
    read_reports,
    source_read,
    write_report,
)
from retailstream.health.report import StageHealth, duration, render, verdict
from retailstream.jobs.refine_events import BatchCounts

NOW_MS = 1_800_000_000_000

# A progress document as Spark writes it (fields health does not read left out).
PROGRESS = {
    "id": "5f0c",
    "runId": "a1",
    "name": "refine_events",
    "timestamp": "2027-01-15T08:00:00.000Z",
    "batchId": 41,
    "numInputRows": 1200,
    "inputRowsPerSecond": 240.5,
    "processedRowsPerSecond": 600.0,
    "durationMs": {"triggerExecution": 2000, "addBatch": 1500},
    "stateOperators": [
        {"numRowsTotal": 900, "numRowsDroppedByWatermark": 3},
        {"numRowsTotal": 100, "numRowsDroppedByWatermark": 0},
    ],
    "sources": [
        {
            "description": "KafkaV2[SubscribePattern[^(?:shop\\.orders)$]]",
            "startOffset": {"shop.orders": {"0": 10, "1": 5}},
            "endOffset": {"shop.orders": {"0": 20, "1": 7}},
        },
        {
            "description": "DeltaSource[file:/lake/bronze_events]",
            "endOffset": json.dumps({"reservoirVersion": 12, "index": 3}),
        },
    ],
}


def _report(**changes: object) -> QueryReport:
    base = query_report(PROGRESS, trigger_ms=5000)
    return QueryReport(**{**base.__dict__, "written_ms": NOW_MS, **changes})


def test_a_progress_document_becomes_a_report() -> None:
    report = query_report(PROGRESS, trigger_ms=5000)
    assert (report.name, report.batch_id, report.batch_ms, report.trigger_ms) == (
        "refine_events", 41, 2000, 5000,
    )  # fmt: skip
    assert (report.state_rows, report.late_rows, report.input_rows) == (1000, 3, 1200)
    assert (report.input_rows_per_s, report.processed_rows_per_s) == (240.5, 600.0)
    kafka, delta = report.sources
    assert kafka.next_offsets == {"shop.orders": {"0": 20, "1": 7}}
    # Past file 3 of version 12: version 13 is the next to read.
    assert (delta.table, delta.next_version) == ("/lake/bronze_events", 13)


def test_a_delta_source_at_a_version_start_reads_that_version_next() -> None:
    read = source_read(
        {
            "description": "DeltaSource[/lake/silver]",
            "endOffset": {"reservoirVersion": 4, "index": -1},
        }
    )
    assert read is not None and read.next_version == 4
    assert source_read({"description": "RateStreamV2", "endOffset": 3}) is None


def test_reports_round_trip_through_their_files(tmp_path: Path) -> None:
    report = _report()
    write_report(tmp_path, report)
    (tmp_path / "broken.json").write_text("{not json")
    assert read_reports(tmp_path) == [report]


def test_records_and_seconds_behind_per_partition() -> None:
    nxt = {("t", 0): 20, ("t", 1): 7, ("t", 2): 3}
    ends = {("t", 0): 25, ("t", 1): 7, ("t", 2): 9}
    assert records_behind(nxt, ends) == {("t", 0): 5, ("t", 1): 0, ("t", 2): 6}
    # Partition 2's first unread record could not be read: as old as the oldest known.
    lags = kafka_lags(nxt, ends, {("t", 0): NOW_MS - 4_000}, NOW_MS)
    assert lags == [Lag("t", 0, 5, 4.0), Lag("t", 1, 0, 0.0), Lag("t", 2, 6, 4.0)]


def test_delta_lag_counts_the_rows_of_unread_versions(tmp_path: Path) -> None:
    log = tmp_path / "bronze_events" / "_delta_log"
    log.mkdir(parents=True)
    for version, rows, at_ms in (
        (0, 0, NOW_MS - 90_000),
        (1, 10, NOW_MS - 60_000),
        (2, 5, NOW_MS - 1_000),
    ):
        actions: list[dict[str, dict[str, object]]] = [{"commitInfo": {"timestamp": at_ms}}]
        if rows:
            actions.append(
                {
                    "add": {
                        "path": f"p{version}",
                        "dataChange": True,
                        "stats": json.dumps({"numRecords": rows}),
                    }
                }
            )
        (log / f"{version:020d}.json").write_text("\n".join(json.dumps(a) for a in actions))
    assert delta_lag(tmp_path / "bronze_events", 1, NOW_MS / 1000) == Lag(
        "bronze_events", None, 15, 60.0
    )
    assert delta_lag(tmp_path / "bronze_events", 3, NOW_MS / 1000) == Lag(
        "bronze_events", None, 0, 0.0
    )


def _stage(name: str, lags: list[Lag], **changes: object) -> StageHealth:
    return StageHealth(name, _report(name=name, **changes), tuple(lags), NOW_MS)


def test_the_verdict_names_the_stream_furthest_behind_and_why() -> None:
    stages = [
        _stage("ingest_events", [Lag("shop.orders", 0, 10, 2.0)]),
        _stage("refine_events", [Lag("bronze_events", None, 90_000, 720.0)], batch_ms=40_000),
    ]
    assert verdict(stages) == (
        "refine_events is 12 min behind bronze_events: its batches take 40 s against a 5 s trigger"
    )


def test_a_lag_within_a_few_triggers_keeps_up() -> None:
    stages = [_stage("ingest_events", [Lag("shop.orders", 1, 300, 12.0)])]
    assert not stages[0].behind
    assert verdict(stages) == (
        "all 1 streams keep up: the furthest behind is ingest_events, 12 s behind shop.orders"
    )


def test_a_stream_that_stopped_reporting_is_named() -> None:
    stages = [_stage("gold_views", [], written_ms=NOW_MS - 3_600_000)]
    assert verdict(stages) == "gold_views has not reported for 60 min: is it running?"
    assert verdict([]).startswith("no stream has reported yet")
    assert verdict(stages, "timed out").startswith("Kafka does not answer (timed out)")


def test_durations_read_as_people_say_them() -> None:
    assert [duration(s) for s in (0, 0.25, 12, 600, 9000)] == [
        "0 s",
        "250 ms",
        "12 s",
        "10 min",
        "2.5 h",
    ]


def test_status_fits_a_screen_and_ends_with_the_verdict() -> None:
    stages = [
        _stage("ingest_events", [Lag("shop.orders", 0, 10, 2.0)]),
        StageHealth("serving_views", None, (Lag("shop.orders", 0, 0, 0.0),), NOW_MS),
    ]
    text = render(stages, None)
    lines = text.splitlines()
    assert len(lines) == 5 and all(len(line) <= 120 for line in lines)
    assert lines[1].startswith("ingest_events") and "2 s/5 s" in lines[1]
    assert lines[-1] == verdict(stages)


def test_metrics_carry_each_lag_and_rate_in_prometheus_text() -> None:
    stages = [
        _stage(
            "refine_events", [Lag("shop.orders", 1, 7, 3.5), Lag("bronze_events", None, 40, 9.0)]
        )
    ]
    text = exposition(stages, None).decode()
    assert (
        'retailstream_stream_lag_records{partition="1",source="shop.orders",stream="refine_events"} 7.0'
        in text
    )
    assert (
        'retailstream_stream_lag_seconds{partition="",source="bronze_events",stream="refine_events"} 9.0'
        in text
    )
    assert 'retailstream_stream_batch_duration_seconds{stream="refine_events"} 2.0' in text
    assert 'retailstream_stream_trigger_interval_seconds{stream="refine_events"} 5.0' in text
    assert 'retailstream_stream_late_rows{stream="refine_events"} 3.0' in text
    assert "retailstream_kafka_up 1.0" in text
    assert "retailstream_kafka_up 0.0" in exposition([], "down").decode()


def test_quarantine_shares_and_reasons_in_status_and_metrics() -> None:
    tally = {
        "orders": {"rows": 2000, "quarantined": 30, "unknown_sku": 20, "invalid_json": 12},
        "ratings": {"rows": 500, "quarantined": 0},
    }
    stages = [_stage("refine_events", [], tally=tally)]
    text = render(stages, None)
    assert "  quarantined orders: 30 of 2,000 rows (1.5 %): unknown_sku 20, invalid_json 12" in text
    assert "ratings" not in text
    metrics = exposition(stages, None).decode()
    assert 'retailstream_refined_rows_total{table="orders"} 2000.0' in metrics
    assert 'retailstream_quarantined_rows_total{table="ratings"} 0.0' in metrics
    assert (
        'retailstream_quarantine_reasons_total{reason="unknown_sku",table="orders"} 20.0' in metrics
    )


def test_refine_counts_each_batch_once_into_its_totals() -> None:
    counts = BatchCounts()
    batch = {"orders": {"rows": 10, "valid": 8, "quarantined": 2, "by_reason": {"unknown_sku": 2}}}
    counts.put(0, batch)
    counts.put(0, batch)  # the same batch again
    counts.put(
        1,
        {
            "orders": {
                "rows": 5,
                "valid": 4,
                "quarantined": 1,
                "by_reason": {"unknown_sku": 1, "invalid_json": 1},
            }
        },
    )
    assert counts.totals() == {
        "orders": {"rows": 15, "quarantined": 3, "unknown_sku": 3, "invalid_json": 1}
    }
