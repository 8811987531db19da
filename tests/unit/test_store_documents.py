"""The serving store's documents: what a row becomes in the store and back.

The store encodes with orjson (the fold writes every row it touches); rows
must come back as `json` wrote them before, and stores written before still read."""

from __future__ import annotations

import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from retailstream.views.store import SqliteStore, from_json, to_json

pytestmark = pytest.mark.unit


def test_rows_from_spark_and_pandas_are_written_as_iso_text_and_plain_numbers() -> None:
    row = {
        "at": datetime(2026, 6, 1, 9, 30, 0, 250000),
        "utc": datetime(2026, 6, 1, 9, 30, tzinfo=UTC),
        "day": date(2026, 6, 1),
        "pandas_time": pd.Timestamp("2026-06-01 09:30:00.5"),
        "numpy_float": np.float64(2.5),
        "histogram": {"1": 0, "5": 2},
        "name": "Café",
    }
    assert from_json(to_json(row)) == {
        "at": "2026-06-01T09:30:00.250000",
        "utc": "2026-06-01T09:30:00+00:00",
        "day": "2026-06-01",
        "pandas_time": "2026-06-01T09:30:00.500000",
        "numpy_float": 2.5,
        "histogram": {"1": 0, "5": 2},
        "name": "Café",
    }


def test_a_value_json_cannot_hold_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="JSON serializable: object"):
        to_json({"x": object()})


def test_a_store_written_with_nan_by_an_earlier_version_still_reads(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "views.db")
    with sqlite3.connect(store.path) as db:  # as `json.dumps` wrote a NaN before
        db.execute(
            "INSERT INTO stores (store_id, region, doc) VALUES (?, ?, ?)",
            ("ST-1", "iberia", '{"store_id":"ST-1","region":"iberia","lat":NaN}'),
        )
    (row,) = store.rows("stores")
    assert row["store_id"] == "ST-1" and np.isnan(row["lat"])
    store.upsert("stores", [{**row, "lat": float("nan")}])  # written now: null
    assert store.rows("stores")[0]["lat"] is None
