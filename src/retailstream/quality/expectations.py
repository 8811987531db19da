"""The streaming hot path's enforcer: a suite as row-level Spark predicates.

Great Expectations takes seconds per micro-batch, so the refine job checks
each row with plain column expressions that reproduce GX's verdicts exactly
(`tests/streaming/test_quality_agreement.py` holds the two side by side).
The GX rules mirrored here:

- A missing value passes every expectation but `not_be_null`. GX runs on
  pandas, where a missing value is null *or NaN*; Spark's NaN is a value (and
  compares greater than any number), so a float NaN counts as missing here.
- `match_regex` searches (pandas `str.contains`): anchors are the suite's job.
  Java's `$` also matches before a final `\\r` or `\\u2028`, Python's only
  before a final `\\n`; the UNIX_LINES flag `(?d)` makes Java read them alike.
- Column-pair expectations skip a row per `ignore_row_if`; any other row
  with a missing value fails (pandas compares NaT/NaN as False).

Everything is a pure DataFrame -> DataFrame function, for batch and
foreachBatch alike.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DataType, DoubleType, FloatType, IntegerType

from retailstream.quality.suites import (
    BetweenKwargs,
    Expectation,
    InSetKwargs,
    MatchRegexKwargs,
    NotNullKwargs,
    PairGreaterKwargs,
    Suite,
    ValueSetSource,
)

FAILED_EXPECTATIONS = "failed_expectations"
# Bronze coordinates: the address of a row, unique within a silver batch.
ROW_KEY = ("topic", "partition", "offset")


def _missing(column: Column, data_type: DataType) -> Column:
    """Null, or NaN in a float column: what pandas (and so GX) calls missing."""
    if isinstance(data_type, FloatType | DoubleType):
        return column.isNull() | F.isnan(column)
    return column.isNull()


def _between(column: Column, kwargs: BetweenKwargs) -> Column:
    checks = []
    if kwargs.min_value is not None:
        low = F.lit(kwargs.min_value)
        checks.append(column > low if kwargs.strict_min else column >= low)
    if kwargs.max_value is not None:
        high = F.lit(kwargs.max_value)
        checks.append(column < high if kwargs.strict_max else column <= high)
    in_range = checks[0]
    for check in checks[1:]:
        in_range = in_range & check
    return in_range


def _pair_fails(df: DataFrame, kwargs: PairGreaterKwargs) -> Column:
    a, b = F.col(kwargs.column_A), F.col(kwargs.column_B)
    a_missing = _missing(a, df.schema[kwargs.column_A].dataType)
    b_missing = _missing(b, df.schema[kwargs.column_B].dataType)
    ignored = {
        "both_values_are_missing": a_missing & b_missing,
        "either_value_is_missing": a_missing | b_missing,
        "neither": F.lit(False),
    }[kwargs.ignore_row_if]
    greater = a >= b if kwargs.or_equal else a > b
    holds = ~a_missing & ~b_missing & greater
    return ~ignored & ~holds


def _row_fails(df: DataFrame, expectation: Expectation, known_flag: str | None) -> Column:
    """True where the row fails `expectation`, never null.

    `known_flag` names the column set by the reference join (true where the
    value is in the reference set) for `value_set_from` expectations.
    """
    kwargs = expectation.kwargs
    if isinstance(kwargs, PairGreaterKwargs):
        return F.coalesce(_pair_fails(df, kwargs), F.lit(False))
    column = F.col(kwargs.column)
    missing = _missing(column, df.schema[kwargs.column].dataType)
    if isinstance(kwargs, NotNullKwargs):
        return missing
    if isinstance(kwargs, BetweenKwargs):
        holds = _between(column, kwargs)
    elif isinstance(kwargs, InSetKwargs) and known_flag is not None:
        holds = F.col(known_flag).isNotNull()
    elif isinstance(kwargs, InSetKwargs):
        holds = column.isin(list(kwargs.value_set or ()))
    elif isinstance(kwargs, MatchRegexKwargs):
        holds = column.rlike("(?d)" + kwargs.regex)
    else:  # load_suite admits no other kind; a new one must be mirrored here
        raise TypeError(f"no Spark predicate for {expectation.type}")
    return F.coalesce(~missing & ~holds, F.lit(False))


def _flag_known(
    df: DataFrame, column: str, reference: DataFrame, source: ValueSetSource, flag: str
) -> DataFrame:
    """`df` plus `flag`: true where `column`'s value is in the reference column, else null.

    The reference side is deduplicated, so the left join keeps one output row
    per input row, and broadcast: reference tables are small next to a stream.
    """
    known = (
        reference.select(F.col(source.column).alias(f"{flag}_value"))
        .where(F.col(f"{flag}_value").isNotNull())
        .distinct()
        .withColumn(flag, F.lit(True))
    )
    joined = df.join(F.broadcast(known), on=df[column] == known[f"{flag}_value"], how="left")
    return joined.drop(f"{flag}_value")


def failed_expectations(
    df: DataFrame, suite: Suite, references: Mapping[str, DataFrame]
) -> DataFrame:
    """`df` plus `failed_expectations: array<string>`, the names of the expectations
    each row fails (empty when it passes every one).

    Expects `df` to hold the columns the suite names (a silver-shaped frame) and
    `references` to map each reference table a `value_set_from` names
    (`products`, `stores`...) to a DataFrame with that column. Row order is
    not kept (the reference lookups are joins); the row count is.
    """
    missing_tables = sorted({s.table for s in suite.value_set_sources()} - set(references))
    if missing_tables:
        raise KeyError(
            f"the {suite.table} suite needs reference tables {', '.join(missing_tables)}"
        )
    joined = df
    flags: dict[tuple[str, ValueSetSource], str] = {}  # one join per (column, source)
    for expectation in suite.expectations:
        source = expectation.value_set_from
        if source is None:
            continue
        column = expectation.columns[0]
        if (column, source) not in flags:
            flag = f"__known_{len(flags)}"
            joined = _flag_known(joined, column, references[source.table], source, flag)
            flags[column, source] = flag
    # One array of (name or null) per row, then nulls dropped: a single select.
    reasons = F.array_compact(
        F.array(
            *(
                F.when(
                    _row_fails(
                        df,
                        e,
                        flags.get((e.columns[0], e.value_set_from)) if e.value_set_from else None,
                    ),
                    F.lit(e.name),
                )
                for e in suite.expectations
            )
        )
    )
    return joined.select(*(F.col(c) for c in df.columns), reasons.alias(FAILED_EXPECTATIONS))


def fill_unknown_line_skus(df: DataFrame, products: DataFrame) -> DataFrame:
    """`df` with `unknown_line_skus` set: how many `lines` elements have a sku
    that is not in `products.sku` (a line without a sku counts as unknown);
    null when `lines` is null, 0 when it is empty.

    Expects `df` to have `lines` (array of structs with `sku`) and the bronze
    coordinates (topic, partition, offset), which identify a row; the column
    replaces an existing `unknown_line_skus` or is appended. Row order is not kept.
    """
    known = (
        products.select(F.col("sku").alias("known_sku"))
        .where(F.col("known_sku").isNotNull())
        .distinct()
        .withColumn("is_known", F.lit(True))
    )
    line_skus = df.select(*ROW_KEY, F.explode("lines").alias("line")).select(
        *ROW_KEY, F.col("line.sku").alias("line_sku")
    )
    unknown_per_row = (
        line_skus.join(F.broadcast(known), on=F.col("line_sku") == F.col("known_sku"), how="left")
        .groupBy(*ROW_KEY)
        .agg(F.count_if(F.col("is_known").isNull()).alias("unknown_count"))
    )
    # Rows with null or empty lines have no exploded lines, hence no match here.
    unknown_line_skus = (
        F.when(F.col("lines").isNull(), F.lit(None))
        .otherwise(F.coalesce(F.col("unknown_count"), F.lit(0)))
        .cast(IntegerType())
        .alias("unknown_line_skus")
    )
    joined = df.join(unknown_per_row, on=list(ROW_KEY), how="left")
    columns = [unknown_line_skus if c == "unknown_line_skus" else F.col(c) for c in df.columns]
    if "unknown_line_skus" not in df.columns:
        columns.append(unknown_line_skus)
    return joined.select(*columns)
