"""Silver-shaped rows for the quality tests, built from clean generated events.

A deliberately small stand-in for the refine job's parsing (this is test data,
not the product's parser): typed fields by contract, the line summaries and
`event_lag_seconds` from a Kafka timestamp one second after the event.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from retailstream.schemas import CONTRACTS, silver_schema
from retailstream.world import DefectRates, EventGenerator, build_world

WORLD_SEED = 1
START = datetime(2026, 1, 1, tzinfo=UTC)
KAFKA_DELAY = timedelta(seconds=1)


def _timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _typed(kind: str, value: Any) -> Any:
    if value is None:
        return None
    converters: dict[str, Callable[[Any], Any]] = {
        "int": int,
        "double": float,
        "timestamp": _timestamp,
    }
    return converters.get(kind, str)(value)


def silver_row(table: str, offset: int, doc: dict[str, Any]) -> dict[str, Any]:
    """One silver row (a dict by column name) from a clean event value."""
    contract = next(c for c in CONTRACTS.values() if c.table == table)
    row: dict[str, Any] = {"topic": contract.topic, "partition": 0, "offset": offset}
    for field in contract.all_fields:
        if field.kind == "lines":
            row["lines"] = [
                {f.name: _typed(f.kind, line.get(f.name)) for f in contract.line_fields}
                for line in doc["lines"]
            ]
        else:
            row[field.name] = _typed(field.kind, doc.get(field.name))
    row["kafka_timestamp"] = row["event_time"] + KAFKA_DELAY
    row["event_lag_seconds"] = KAFKA_DELAY.total_seconds()
    if contract.line_fields:
        row["line_count"] = len(row["lines"])
        row["min_line_quantity"] = min(line["quantity"] for line in row["lines"])
        prices = [line.get("unit_price") for line in row["lines"]]
        row["min_line_unit_price"] = None if None in prices else min(prices)
        row["unknown_line_skus"] = 0
    row["_rescued"] = None
    return row


@cache
def clean_rows(per_table: int = 12) -> dict[str, tuple[dict[str, Any], ...]]:
    """Up to `per_table` silver rows per table from a clean stream (offsets unique)."""
    generator = EventGenerator(reference_world(), 1, START, 120.0, DefectRates.none())
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for offset, record in enumerate(generator.next_batch(4_000).records):
        table = CONTRACTS[record.topic].table
        if len(rows[table]) < per_table:
            rows[table].append(silver_row(table, offset, json.loads(record.value)))
    return {table: tuple(found) for table, found in rows.items()}


@cache
def reference_world():  # noqa: ANN201 - World
    return build_world(WORLD_SEED, "small")


def reference_tables() -> dict[str, pd.DataFrame]:
    return reference_world().tables()


def silver_frame(spark: SparkSession, table: str, rows: list[dict[str, Any]]) -> DataFrame:
    """`rows` (dicts by column name; absent columns are null) as a silver_schema frame."""
    schema = silver_schema(table)
    return spark.createDataFrame(
        [tuple(row.get(name) for name in schema.fieldNames()) for row in rows], schema
    )
