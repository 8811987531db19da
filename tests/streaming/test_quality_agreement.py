"""The hot path's Spark predicates and Great Expectations agree row for row.

For every shipped suite, a silver-shaped table is built from clean generated
events plus one defective row per expectation (and rows with nulls, NaNs and
edge values); the set of rows failing each expectation must be the same
through `failed_expectations` (Spark) and `validate_frame` (GX on pandas).
Then `validate_tables` runs over real silver Delta tables.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, StructType

from retailstream.io.delta import write_table
from retailstream.quality.expectations import (
    FAILED_EXPECTATIONS,
    failed_expectations,
    fill_unknown_line_skus,
    known_frames,
)
from retailstream.quality.gx_validation import open_context, validate_frame
from retailstream.quality.gx_validation import validate_tables as validate_silver_tables
from retailstream.quality.reference_values import PRODUCT_SKUS, reference_values
from retailstream.quality.suites import (
    BetweenKwargs,
    Expectation,
    InSetKwargs,
    MatchRegexKwargs,
    NotNullKwargs,
    PairGreaterKwargs,
    Suite,
    load_suites,
)
from retailstream.schemas import silver_schema
from support import PROJECT_HOME
from unit.quality.silver_rows import clean_rows, reference_tables, silver_frame

SUITES = load_suites(PROJECT_HOME / "conf" / "expectations")


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quality")


@pytest.fixture(scope="module")
def gx_context(output_dir: Path):  # noqa: ANN201 - GX data context
    """One GX context for the module: importing GX takes seconds."""
    return open_context(output_dir)


@pytest.fixture(scope="module")
def known_values() -> dict[str, list[Any]]:
    return reference_values(reference_tables(), SUITES.values(), extra=[PRODUCT_SKUS])


def _violate(row: dict[str, Any], expectation: Expectation, schema: StructType) -> None:
    """Change `row` in place so that it fails `expectation`."""
    kwargs = expectation.kwargs
    if isinstance(kwargs, PairGreaterKwargs):
        row[kwargs.column_A], row[kwargs.column_B] = row[kwargs.column_B], row[kwargs.column_A]
        return
    column = kwargs.column
    if isinstance(kwargs, NotNullKwargs):
        row[column] = None
    elif isinstance(kwargs, BetweenKwargs) and column == "unknown_line_skus":
        row["lines"][0]["sku"] = "SKU-999999"  # counted by fill_unknown_line_skus
    elif isinstance(kwargs, BetweenKwargs):
        if kwargs.min_value is not None:
            row[column] = kwargs.min_value if kwargs.strict_min else kwargs.min_value - 1
        else:
            assert kwargs.max_value is not None  # a between has one bound at least
            row[column] = kwargs.max_value + 1
        if isinstance(schema[column].dataType, DoubleType):
            row[column] = float(row[column])
    elif isinstance(kwargs, InSetKwargs) and expectation.value_set_from is not None:
        # Well-formed but unknown: C-0000042 -> C-9999999, iberia -> iberia-x.
        unknown = re.sub("[0-9]", "9", row[column])
        row[column] = unknown if unknown != row[column] else f"{unknown}-x"
    elif isinstance(kwargs, InSetKwargs):
        values = kwargs.value_set or ()
        if isinstance(values[0], int):
            top = max(values)
            assert isinstance(top, int | float)  # a set of numbers
            row[column] = top + 1
        else:
            row[column] = "not-a-value"
    elif isinstance(kwargs, MatchRegexKwargs):
        # Java's $ would accept this; Python's (and so GX's) must not.
        row[column] = f"{row[column]}\r"


def _edge_rows(table: str, clean: tuple[dict[str, Any], ...]) -> Iterator[dict[str, Any]]:
    """Rows whose verdicts differ between naive Spark and pandas: nulls, NaN, infinities,
    a trailing newline in an id, all-null."""
    schema = silver_schema(table)
    doubles = [f.name for f in schema.fields if isinstance(f.dataType, DoubleType)]
    for i, column in enumerate(doubles):
        for value in (math.nan, math.inf):
            row = copy.deepcopy(clean[i % len(clean)])
            row[column] = value
            yield row
    row = copy.deepcopy(clean[0])
    row["event_id"] = row["event_id"] + "\n"
    yield row
    yield {"topic": clean[0]["topic"], "partition": 0}


def defect_table(spark: SparkSession, suite: Suite) -> DataFrame:
    clean = clean_rows()[suite.table]
    rows = [copy.deepcopy(r) for r in clean[:5]]
    for i, expectation in enumerate(suite.expectations):
        row = copy.deepcopy(clean[i % len(clean)])
        _violate(row, expectation, silver_schema(suite.table))
        rows.append(row)
    rows.extend(_edge_rows(suite.table, clean))
    for offset, row in enumerate(rows):
        row["offset"] = offset  # the row id both sides report
    return silver_frame(spark, suite.table, rows)


@pytest.mark.parametrize("table", sorted(SUITES))
def test_spark_predicates_and_gx_fail_the_same_rows(
    spark: SparkSession,
    table: str,
    known_values: dict[str, list[Any]],
    gx_context,
    output_dir: Path,
) -> None:
    suite = SUITES[table]
    known = known_frames(spark, known_values)
    df = defect_table(spark, suite)
    if "lines" in df.columns:
        df = fill_unknown_line_skus(df, known.listed[PRODUCT_SKUS.key])
    checked = failed_expectations(df, suite, known).orderBy("offset").cache()

    spark_failures: dict[str, set[int]] = {name: set() for name in suite.names}
    for row in checked.select("offset", FAILED_EXPECTATIONS).collect():
        for name in row[FAILED_EXPECTATIONS]:
            spark_failures[name].add(row["offset"])

    frame = checked.drop(FAILED_EXPECTATIONS).toPandas()
    frame.index = frame["offset"].to_numpy()
    summary = validate_frame(frame, suite, known_values, output_dir, context=gx_context)
    gx_failures = {name: set(rows) for name, rows in summary.unexpected_rows().items()}

    assert [o.error for o in summary.outcomes if o.error] == []
    assert gx_failures == spark_failures
    # The table is a real test: every expectation is broken somewhere, some rows are clean.
    assert all(spark_failures.values()), [n for n, rows in spark_failures.items() if not rows]
    failing_rows = set().union(*spark_failures.values())
    assert len(set(frame.index) - failing_rows) >= 3
    checked.unpersist()


def test_validate_tables_reads_silver_delta_tables_and_skips_missing_ones(
    spark: SparkSession,
    tmp_path: Path,
    known_values: dict[str, list[Any]],
    gx_context,
) -> None:
    lake = tmp_path / "lake"
    ratings = defect_table(spark, SUITES["ratings"])
    write_table(ratings, lake / "silver" / "ratings")
    clean_weather = silver_frame(spark, "weather", [dict(r) for r in clean_rows()["weather"]])
    write_table(clean_weather, lake / "silver" / "weather")

    report = validate_silver_tables(
        spark, lake, SUITES, known_values, tmp_path / "quality", max_rows=10
    )

    by_table = {s.table: s for s in report.summaries}
    assert set(by_table) == {"ratings", "weather"}
    assert set(report.skipped) == set(SUITES) - {"ratings", "weather"}
    assert not report.success
    assert by_table["weather"].success
    ratings_summary = by_table["ratings"]
    assert ratings_summary.rows == 10 and ratings_summary.table_rows == ratings.count()
    assert ratings_summary.result_path is not None
    assert json.loads(ratings_summary.result_path.read_text())["success"] is False
    # Failing rows are named by their bronze address.
    failing = {row for rows in ratings_summary.unexpected_rows().values() for row in rows}
    assert failing and all(
        isinstance(row, str) and re.fullmatch(r"shop\.ratings/0/[0-9]+", row) for row in failing
    )
    assert report.data_docs_index is not None and report.data_docs_index.is_file()
    text = "\n".join(report.lines())
    assert "(a sample of" in text and "orders: no silver table, skipped" in text
