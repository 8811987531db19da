"""Ratings a user brings to train the recommender on, in the shape silver ratings have.

Accepted: CSV with a header, Parquet, a Delta table, and MovieLens' `::` form
(`user::item::rating[::timestamp]`, one rating a line, in `.dat` or `.txt`
files). A file is recognised by what it holds, not by its name: Parquet's magic
bytes, a first line split by `::`, or a comma-separated header. Whatever the
source, the result has `customer_id` and `sku` (strings), `stars` (double) and
`event_time` (timestamp, null when the source has none): the columns the
recommender reads from silver. Column names are matched from the usual
spellings (`userId`, `user_id`, `movieId`, `item`, `rating`, `timestamp`...);
numeric timestamps are epoch seconds.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import NumericType

from retailstream.errors import UserError
from retailstream.io.lake_names import has_commits

FORMATS = ("csv", "parquet", "delta", "movielens")

# Accepted spellings of each column, compared lower-case without `_`.
ALIASES = {
    "customer_id": ("customerid", "customer", "userid", "user", "uid"),
    "sku": ("sku", "itemid", "item", "movieid", "productid", "product", "iid"),
    "stars": ("stars", "rating", "score"),
    "event_time": ("eventtime", "timestamp", "time", "ts", "ratedat", "date"),
}
OPTIONAL = frozenset({"event_time"})
SNIFF_BYTES = 4096  # what `detect_format` reads of a file to tell its format


def detect_format(path: Path) -> str:
    """The format of `path` from what it is: a Delta or Parquet folder, or a file's
    first bytes (its extension only when they do not tell)."""
    if path.is_dir():
        if has_commits(path):
            return "delta"
        if any(path.glob("*.parquet")):
            return "parquet"
    elif path.is_file():
        with path.open("rb") as file:
            head = file.read(SNIFF_BYTES)
        sniffed = sniff_format(head)
        if sniffed is not None:
            return sniffed
        if not head.strip():
            raise UserError(f"{path} is empty: no ratings to train on")
    suffix = path.suffix.lower()
    by_suffix = {".csv": "csv", ".parquet": "parquet", ".dat": "movielens"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    raise UserError(
        f"cannot tell the format of {path}: give --format ({', '.join(FORMATS)}); recognised "
        "are Parquet, CSV with a header, and MovieLens lines (user::item::rating::timestamp)"
    )


def sniff_format(head: bytes) -> str | None:
    """The format a file's first bytes show, or None when they do not tell (pure)."""
    if head.startswith(b"PAR1"):
        return "parquet"
    lines = [line.strip() for line in head.decode("utf-8", "replace").splitlines()]
    first = next((line for line in lines if line), None)
    if first is None:
        return None
    if len(first.split("::")) in (3, 4):
        return "movielens"
    if "," in first and {"customer_id", "sku", "stars"} <= set(match_columns(first.split(","))):
        return "csv"
    return None


def _normal(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def match_columns(columns: list[str]) -> dict[str, str]:
    """{our column: the source's column} for each column found (pure)."""
    found: dict[str, str] = {}
    normal = {_normal(c.strip().strip('"')): c for c in columns}
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
    """MovieLens `user::item::rating[::timestamp]` lines as raw columns."""
    parts = F.split(F.trim(F.col("value")), "::")
    return (
        spark.read.text(str(path))
        .where(F.length(F.trim("value")) > 0)
        .select(
            F.get(parts, 0).alias("userId"),
            F.get(parts, 1).alias("movieId"),
            F.get(parts, 2).cast("double").alias("rating"),
            # The timestamp is optional: `user::item::rating` lines have none.
            F.get(parts, 3).cast("long").alias("timestamp"),
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


def require_variety(ratings: DataFrame, source: str) -> None:
    """Refuse ratings from fewer than two customers or of fewer than two items: nothing
    to factorise or to rank (a clear error before anything is logged or registered)."""
    row = ratings.agg(
        F.count_distinct("customer_id").alias("customers"), F.count_distinct("sku").alias("items")
    ).first()
    customers, items = (int(row["customers"]), int(row["items"])) if row else (0, 0)
    if customers < 2 or items < 2:
        raise UserError(
            f"{source}: ratings by {customers:,} customer(s) of {items:,} item(s); a "
            "recommender needs at least two of each; nothing was registered or changed"
        )
