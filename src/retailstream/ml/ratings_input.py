"""Ratings a user brings to train the recommender on, in the shape silver ratings have.

Accepted: CSV with a header, Parquet, a Delta table, and MovieLens' `.dat` form
(`user::item::rating::timestamp`, one rating a line). Whatever the source, the
result has `customer_id` and `sku` (strings), `stars` (double) and `event_time`
(timestamp): the columns the recommender reads from silver. Column names are
matched from the usual spellings (`userId`, `user_id`, `movieId`, `item`,
`rating`, `timestamp`...); numeric timestamps are epoch seconds.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from retailstream.errors import UserError

FORMATS = ("csv", "parquet", "delta", "movielens")

# Accepted spellings of each column, compared lower-case without `_`.
ALIASES = {
    "customer_id": ("customerid", "customer", "userid", "user", "uid"),
    "sku": ("sku", "itemid", "item", "movieid", "productid", "product", "iid"),
    "stars": ("stars", "rating", "score"),
    "event_time": ("eventtime", "timestamp", "time", "ts", "ratedat", "date"),
}
OPTIONAL = frozenset({"event_time"})


def detect_format(path: Path) -> str:
    """The format of `path` from what it is: a Delta folder, or the file's extension."""
    if path.is_dir():
        if (path / "_delta_log").is_dir():
            return "delta"
        if any(path.glob("*.parquet")):
            return "parquet"
    suffix = path.suffix.lower()
    by_suffix = {".csv": "csv", ".parquet": "parquet", ".dat": "movielens"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    raise UserError(
        f"cannot tell the format of {path}: give --format ({', '.join(FORMATS)}); "
        "files are recognised by .csv, .parquet and .dat (MovieLens user::item::rating::timestamp)"
    )


def _normal(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def match_columns(columns: list[str]) -> dict[str, str]:
    """{our column: the source's column} for each column found (pure)."""
    found: dict[str, str] = {}
    normal = {_normal(c): c for c in columns}
    for ours, spellings in ALIASES.items():
        for spelling in spellings:
            if spelling in normal:
                found[ours] = normal[spelling]
                break
    return found


def _as_time(column: Column, numeric: bool) -> Column:
    return F.timestamp_seconds(column.cast("long")) if numeric else column.cast("timestamp")


def normalise(raw: DataFrame, source: str) -> DataFrame:
    """`raw` renamed and cast to the recommender's columns; a clear error when one is missing."""
    found = match_columns(raw.columns)
    missing = [c for c in ALIASES if c not in found and c not in OPTIONAL]
    if missing:
        accepted = "; ".join(f"{ours}: {', '.join(names)}" for ours, names in ALIASES.items())
        raise UserError(
            f"{source}: no column for {', '.join(missing)} among {', '.join(raw.columns)} "
            f"(accepted names: {accepted})"
        )
    if "event_time" in found:
        numeric = isinstance(raw.schema[found["event_time"]].dataType, NumericType)
        event_time = _as_time(F.col(found["event_time"]), numeric)
    else:  # no time: every rating counts as of one instant (the split then falls back to order)
        event_time = F.lit(None).cast("timestamp")
    return raw.select(
        F.col(found["customer_id"]).cast("string").alias("customer_id"),
        F.col(found["sku"]).cast("string").alias("sku"),
        F.col(found["stars"]).cast("double").alias("stars"),
        event_time.alias("event_time"),
    )


def read_movielens(spark: SparkSession, path: Path) -> DataFrame:
    """MovieLens `user::item::rating::timestamp` lines as raw columns."""
    parts = F.split(F.col("value"), "::")
    return (
        spark.read.text(str(path))
        .where(F.length(F.trim("value")) > 0)
        .select(
            parts.getItem(0).alias("userId"),
            parts.getItem(1).alias("movieId"),
            parts.getItem(2).cast("double").alias("rating"),
            parts.getItem(3).cast("long").alias("timestamp"),
        )
    )


def read_ratings(spark: SparkSession, path: Path, fmt: str | None = None) -> DataFrame:
    """The ratings at `path` as (customer_id, sku, stars, event_time), rows with a gap dropped."""
    if not path.exists():
        raise UserError(f"no ratings at {path}")
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise UserError(f"unknown ratings format {fmt!r}; formats: {', '.join(FORMATS)}")
    if fmt == "csv":
        raw = spark.read.option("header", True).option("inferSchema", True).csv(str(path))
    elif fmt == "parquet":
        raw = spark.read.parquet(str(path))
    elif fmt == "delta":
        raw = spark.read.format("delta").load(str(path))
    else:
        raw = read_movielens(spark, path)
    ratings = normalise(raw, str(path))
    return ratings.dropna(subset=["customer_id", "sku", "stars"])
