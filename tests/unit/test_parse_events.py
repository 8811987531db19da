"""Parsing bronze values into typed events: every defect becomes a reason, never a crash."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.schemas import CONTRACTS, silver_schema
from retailstream.transforms.parse import event_id_text, parse_events, raw_fields

BRONZE_DDL = (
    "topic string, partition int, offset long, key binary, value binary, kafka_timestamp timestamp"
)
KAFKA_TIME = datetime(2026, 6, 1, 12, 0, 5)


def _rating(**fields: object) -> bytes:
    event = {
        "event_id": "a" * 32,
        "event_type": "item_rated",
        "schema_version": 1,
        "event_time": "2026-06-01T12:00:00.000Z",
        "customer_id": "C-0000001",
        "sku": "SKU-000001",
        "stars": 4,
    }
    event.update(fields)
    return json.dumps({k: v for k, v in event.items() if v is not ...}).encode()


def _parse(spark: SparkSession, topic: str, values: list[bytes | None]):
    rows = [(topic, 0, i, b"k", v, KAFKA_TIME) for i, v in enumerate(values)]
    parsed = parse_events(spark.createDataFrame(rows, BRONZE_DDL), CONTRACTS[topic])
    return sorted(parsed.collect(), key=lambda r: r.offset)


def test_a_clean_rating_is_typed_with_no_reasons(spark: SparkSession) -> None:
    [row] = _parse(spark, "shop.ratings", [_rating()])
    assert row.parse_errors == []
    assert (row.stars, row.sku, row.schema_version) == (4, "SKU-000001", 1)
    assert row.event_time == datetime(2026, 6, 1, 12, 0)
    assert row.event_lag_seconds == pytest.approx(5.0)
    assert row._rescued is None and row._dedup_key == "a" * 32


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "null_value"),
        (b"", "empty_value"),
        (b"\xff\xfe{not utf8", "not_utf8"),
        (b'{"event_id": "x",, }', "invalid_json"),
        (b'{"event_id": "abc", "sku": "SK', "invalid_json"),
        (b"[1, 2, 3]", "invalid_json"),
        (_rating(stars="five"), "stars: not int"),
        (_rating(event_time="yesterday"), "event_time: not timestamp"),
    ],
)
def test_bad_values_become_reasons(spark: SparkSession, value: bytes | None, reason: str) -> None:
    [row] = _parse(spark, "shop.ratings", [value])
    assert reason in row.parse_errors


def test_missing_field_is_null_for_the_not_null_expectation(spark: SparkSession) -> None:
    [row] = _parse(spark, "shop.ratings", [_rating(stars=...)])
    assert row.stars is None and row.parse_errors == []


def test_extra_fields_are_rescued(spark: SparkSession) -> None:
    [row] = _parse(spark, "shop.ratings", [_rating(review="lovely", source={"app": "ios"})])
    assert json.loads(row._rescued) == {"review": "lovely", "source": '{"app":"ios"}'}
    assert row.parse_errors == []


def test_schema_version_2_is_upcast(spark: SparkSession) -> None:
    v2 = json.loads(_rating(stars=...))
    v2.update(schema_version=2, rating=2)
    [row] = _parse(spark, "shop.ratings", [json.dumps(v2).encode()])
    assert (row.stars, row.schema_version, row._rescued) == (2, 2, None)


def test_order_lines_are_typed_and_summarised(spark: SparkSession) -> None:
    order = {
        "event_id": "b" * 32, "event_type": "order_placed", "schema_version": 1,
        "event_time": "2026-06-01T12:00:00.000Z", "order_id": "O-0000000001",
        "customer_id": "C-0000001", "store_id": None, "channel": "web", "currency": "EUR",
        "lines": [{"sku": "SKU-000001", "quantity": 2, "unit_price": 10.5},
                  {"sku": "SKU-000002", "quantity": 1, "unit_price": 3.0}],
        "total": 24.0,
    }  # fmt: skip
    bad = dict(
        order, event_id="c" * 32, lines=[{"sku": "SKU-000001", "quantity": "two", "unit_price": 1}]
    )
    good_row, bad_row = _parse(
        spark, "shop.orders", [json.dumps(order).encode(), json.dumps(bad).encode()]
    )
    assert good_row.parse_errors == []
    assert (good_row.line_count, good_row.min_line_quantity, good_row.min_line_unit_price) == (
        2,
        1,
        3.0,
    )
    assert good_row.lines[0].sku == "SKU-000001" and good_row.store_id is None
    assert bad_row.parse_errors == ["lines.quantity: not int"]


def test_output_has_the_silver_columns(spark: SparkSession) -> None:
    for topic, contract in CONTRACTS.items():
        parsed = parse_events(spark.createDataFrame([], BRONZE_DDL), contract)
        silver = [f.name for f in silver_schema(contract.table).fields]
        assert parsed.columns[: len(silver)] == silver, topic
        assert (
            parsed.schema[silver[-1]].dataType == silver_schema(contract.table)[silver[-1]].dataType
        )


def test_event_id_text_agrees_with_the_field_map(spark: SparkSession) -> None:
    # Refine deduplicates on `event_id_text` before parsing; the serving path on the
    # parsed map's id. The two must give the same key for every kind of value.
    values = [
        _rating(),
        _rating(event_id=12345),
        _rating(event_id={"nested": 1}),
        _rating(event_id=None),
        _rating(event_id=...),
        b'{"event_id": "first", "event_id": "second"}',
        b'{"event_id": "a", "sku": "SK',
        b'{"event_id": "a"} trailing text',
        b'[{"event_id": "in a list"}]',
        b'"just a string"',
        b'{"outer": {"event_id": "nested deeper"}}',
        b"\xff\xfe{not utf8",
        b"",
        None,
    ]
    frame = spark.createDataFrame([(i, v) for i, v in enumerate(values)], "i int, value binary")
    rows = frame.select(
        "i",
        event_id_text(F.col("value")).alias("text"),
        raw_fields(F.col("value"))["event_id"].alias("mapped"),
    ).collect()
    assert [(r.i, r.text) for r in rows] == [(r.i, r.mapped) for r in rows]
    assert {r.i: r.text for r in rows}[0] == "a" * 32
