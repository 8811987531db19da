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

Reference lookups (`value_set_from`, line skus) check the distinct reference
values gathered once per job (`known_frames`). Up to `IN_SET_LIMIT` values
they are a SQL `IN` list, which Spark evaluates as a hash set: a row-level
expression, so the checks run inside a streaming query's plan, built once,
with no join and no broadcast per micro-batch. The list goes to the JVM as one
SQL text (a Python `isin` costs a Py4J call per value: seconds for thousands).
Larger sets are broadcast joins against small cached frames of the values.
Everything is a pure DataFrame -> DataFrame function, for batch, foreachBatch
and streaming plans alike.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
from pyspark.sql import Column, DataFrame, SparkSession
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
)
from retailstream.transforms.columns import present

FAILED_EXPECTATIONS = "failed_expectations"
# Bronze coordinates: the address of a row, unique within a silver batch.
ROW_KEY = ("topic", "partition", "offset")
# Reference sets up to this size are checked with an `IN` list, larger ones by a join.
IN_SET_LIMIT = 25_000


class KnownValues(Mapping[str, DataFrame]):
    """Reference value sets by `table.column`: each as a small cached one-column
    (`value`) DataFrame (`self[key]`), and as the listed values (`listed[key]`)."""

    def __init__(self, frames: Mapping[str, DataFrame], listed: Mapping[str, Sequence[Any]]):
        self._frames = dict(frames)
        self.listed = dict(listed)

    def __getitem__(self, key: str) -> DataFrame:
        return self._frames[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._frames)

    def __len__(self) -> int:
        return len(self._frames)


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

    `known_flag` names the column the reference join set (true where the value
    is in the reference set, else null) for a `value_set_from` expectation.
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


def known_frames(spark: SparkSession, values: Mapping[str, Sequence[Any]]) -> KnownValues:
    """Each reference value set as a small cached one-column (`value`) DataFrame.

    Built once per job from the values `reference_values` gathered: a batch then
    checks membership with a broadcast hash join (no shuffle, a small plan),
    where a literal `isin` of thousands of ids costs seconds of planning per batch.
    """

    def cached(column: Sequence[Any]) -> DataFrame:
        kind = "string" if all(isinstance(v, str) for v in column) else "long"
        # Through Arrow (a pandas frame), not a pickled row per value.
        values = pd.DataFrame(
            {"value": pd.Series(column, dtype=object if kind == "string" else "int64")}
        )
        frame = spark.createDataFrame(values, f"value {kind}").cache()
        frame.count()
        return frame

    with ThreadPoolExecutor(max_workers=4) as pool:  # small jobs, mostly fixed latency
        frames = dict(zip(values, pool.map(cached, values.values()), strict=True))
    return KnownValues(frames, values)


def _flag_known(df: DataFrame, column: str, known: DataFrame, flag: str) -> DataFrame:
    """`df` plus `flag`: true where `column`'s value is in `known`, else null (one row per row:
    `known` holds distinct values)."""
    marked = known.select(F.col("value").alias(f"{flag}_value"), F.lit(True).alias(flag))
    joined = df.join(F.broadcast(marked), on=df[column] == marked[f"{flag}_value"], how="left")
    return joined.drop(f"{flag}_value")


def failed_expectations(df: DataFrame, suite: Suite, known: Mapping[str, DataFrame]) -> DataFrame:
    """`df` plus `failed_expectations: array<string>`, the names of the expectations
    each row fails (empty when it passes every one).

    Expects `df` to hold the columns the suite names (a silver-shaped frame) and
    `known` to map each `value_set_from` source of the suite (`products.sku`)
    to its distinct values (`known_frames`). Row order is not kept (reference
    lookups are broadcast joins); the row count is.
    """
    missing_sources = sorted({s.key for s in suite.value_set_sources()} - set(known))
    if missing_sources:
        raise KeyError(
            f"the {suite.table} suite needs reference values {', '.join(missing_sources)}"
        )
    joined = df
    flags: dict[tuple[str, str], str] = {}  # one join per (column, source)
    for expectation in suite.expectations:
        source = expectation.value_set_from
        if source is None:
            continue
        column = expectation.columns[0]
        if (column, source.key) not in flags:
            flag = f"__known_{len(flags)}"
            listed = known.listed.get(source.key) if isinstance(known, KnownValues) else None
            if listed is not None and len(listed) <= IN_SET_LIMIT:
                joined = joined.withColumn(flag, F.when(_in_list(column, listed), F.lit(True)))
            else:
                joined = _flag_known(joined, column, known[source.key], flag)
            flags[column, source.key] = flag

    def flag_of(e: Expectation) -> str | None:
        return flags.get((e.columns[0], e.value_set_from.key)) if e.value_set_from else None

    # One array of (name or null) per row, then nulls dropped: a single select.
    reasons = present(
        *(F.when(_row_fails(df, e, flag_of(e)), F.lit(e.name)) for e in suite.expectations)
    )
    return joined.select(*(F.col(c) for c in df.columns), reasons.alias(FAILED_EXPECTATIONS))


def _sql_literal(value: Any) -> str:
    """`value` (text or a whole number) as a Spark SQL literal."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"reference values are text or whole numbers, not {value!r}")
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in_list_sql(values: Sequence[Any]) -> str:
    """The `(...)` of a SQL `IN` over `values` (NULL for none: nothing is in it)."""
    return "(" + (", ".join(_sql_literal(v) for v in sorted(set(values))) or "NULL") + ")"


def _in_list(column: str, values: Sequence[Any]) -> Column:
    """True where `column` is one of `values`, else false or null (one SQL text: one Py4J call)."""
    return F.expr(f"`{column}` IN {_in_list_sql(values)}")


def fill_unknown_line_skus(df: DataFrame, skus: Sequence[str]) -> DataFrame:
    """`df` with `unknown_line_skus` set: how many `lines` elements have a sku
    that is not in `skus` (a line without a sku counts as unknown); null when
    `lines` is null, 0 when it is empty.

    Expects `df` to have `lines` (array of structs with `sku`); the column
    replaces an existing `unknown_line_skus` or is appended. A row-level
    expression, no join or grouping: it runs inside a streaming query's plan
    as well as on a batch. The skus go in as one SQL `IN` list, which Spark
    turns into a hash set (parsed in the JVM in one call: a Python `isin` of
    thousands of values would cost a Py4J round trip each).
    """
    known = _in_list_sql(skus)
    unknown = F.expr(
        f"size(filter(lines, line -> line.sku IS NULL OR NOT coalesce(line.sku IN {known}, false)))"
    )
    unknown_line_skus = (
        F.when(F.col("lines").isNull(), F.lit(None))
        .otherwise(unknown)
        .cast(IntegerType())
        .alias("unknown_line_skus")
    )
    columns = [unknown_line_skus if c == "unknown_line_skus" else F.col(c) for c in df.columns]
    if "unknown_line_skus" not in df.columns:
        columns.append(unknown_line_skus)
    return df.select(*columns)
