"""One value of a whole-frame aggregate, as the driver needs it."""

from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame


def aggregate_value(frame: DataFrame, aggregate: Column) -> Any:
    """`aggregate` (for example `F.max("minute")`) over all of `frame`: None when empty.

    An aggregate without grouping always yields exactly one row, so `first()` cannot
    be None here; the check says so to the type checker and to the reader.
    """
    row = frame.agg(aggregate).first()
    assert row is not None, "an ungrouped aggregate has one row"
    return row[0]
