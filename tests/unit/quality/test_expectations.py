"""Row-level Spark predicates of a suite, on tiny in-memory frames."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import ArrayType, StringType
from pyspark.testing import assertDataFrameEqual

from retailstream.quality.expectations import (
    FAILED_EXPECTATIONS,
    failed_expectations,
    fill_unknown_line_skus,
    known_frames,
)
from retailstream.quality.reference_values import PRODUCT_SKUS, reference_values
from retailstream.quality.suites import Suite, load_suite, load_suites
from support import PROJECT_HOME

from .silver_rows import clean_rows, reference_tables, silver_frame

NAN = float("nan")
INF = float("inf")


def suite_of(tmp_path: Path, table: str, entries: str) -> Suite:
    path = tmp_path / f"{table}.yml"
    path.write_text(f"table: {table}\nexpectations:\n{entries}")
    return load_suite(path)


def failures(df: DataFrame, suite: Suite, references: dict | None = None) -> dict[int, list]:
    """offset -> names of the expectations that row fails, with the reference
    values gathered from `references` as the refine job gathers them."""
    known = known_frames(df.sparkSession, reference_values(references or {}, [suite]))
    result = failed_expectations(df, suite, known)
    return {r["offset"]: r[FAILED_EXPECTATIONS] for r in result.collect()}


def test_a_null_fails_only_not_null(spark: SparkSession, tmp_path: Path) -> None:
    suite = suite_of(
        tmp_path,
        "ratings",
        "  - type: expect_column_values_to_not_be_null\n    kwargs: {column: stars}\n"
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: stars, min_value: 1, max_value: 5}\n"
        "  - type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: stars, value_set: [1, 2, 3, 4, 5]}\n"
        "  - type: expect_column_values_to_match_regex\n"
        "    kwargs: {column: sku, regex: '^SKU-[0-9]{6}$'}\n"
        "  - type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: customer_id}\n"
        "    value_set_from: {table: customers, column: customer_id}\n",
    )
    df = spark.createDataFrame(
        [(1, None, None, None), (2, 4, "SKU-000001", "C-0000001")],
        "offset long, stars int, sku string, customer_id string",
    )
    customers = spark.createDataFrame([("C-0000001",)], "customer_id string")
    assert failures(df, suite, {"customers": customers}) == {1: ["stars_not_null"], 2: []}


def test_between_honours_inclusive_and_strict_bounds(spark: SparkSession, tmp_path: Path) -> None:
    suite = suite_of(
        tmp_path,
        "weather",
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: severity, min_value: 0, max_value: 5}\n"
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: temperature_c, min_value: -40, max_value: 50,"
        " strict_min: true, strict_max: true}\n"
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: wind_kph, min_value: 0}\n",
    )
    df = spark.createDataFrame(
        [
            (1, 0, -39.9, 0.0),
            (2, 5, 49.9, 120.0),
            (3, -1, -40.0, -0.1),
            (4, 6, 50.0, INF),
            (5, 9, 87.5, -INF),
        ],
        "offset long, severity int, temperature_c double, wind_kph double",
    )
    assert failures(df, suite) == {
        1: [],
        2: [],
        3: ["severity_between_0_5", "temperature_c_strictly_between_-40_50", "wind_kph_at_least_0"],
        4: ["severity_between_0_5", "temperature_c_strictly_between_-40_50"],
        5: ["severity_between_0_5", "temperature_c_strictly_between_-40_50", "wind_kph_at_least_0"],
    }


def test_nan_counts_as_missing_as_in_pandas(spark: SparkSession, tmp_path: Path) -> None:
    # Spark orders NaN above every number; GX (pandas) calls it missing.
    suite = suite_of(
        tmp_path,
        "orders",
        "  - type: expect_column_values_to_not_be_null\n    kwargs: {column: total}\n"
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: total, min_value: 0, max_value: 100}\n",
    )
    df = spark.createDataFrame([(1, NAN), (2, None), (3, 101.0)], "offset long, total double")
    assert failures(df, suite) == {
        1: ["total_not_null"],
        2: ["total_not_null"],
        3: ["total_between_0_100"],
    }


def test_regex_searches_and_reads_line_ends_as_python_does(
    spark: SparkSession, tmp_path: Path
) -> None:
    suite = suite_of(
        tmp_path,
        "ratings",
        "  - type: expect_column_values_to_match_regex\n"
        "    kwargs: {column: customer_id, regex: '^C-[0-9]{7}$'}\n"
        "  - type: expect_column_values_to_match_regex\n"
        "    kwargs: {column: sku, regex: '[0-9]{6}'}\n",
    )
    df = spark.createDataFrame(
        [
            (1, "C-0000001", "SKU-000001"),
            (2, "C-0000001\n", "xx000001yy"),  # Python's $ matches before a final \n
            (3, "C-0000001\r", "SKU-1"),  # Java's $ would match before \r; Python's not
            (4, "C-0000001\u2028", "SKU-000001"),
            (5, " C-0000001", "SKU-000001"),
        ],
        "offset long, customer_id string, sku string",
    )
    assert failures(df, suite) == {
        1: [],
        2: [],
        3: ["customer_id_format", "sku_format"],
        4: ["customer_id_format"],
        5: ["customer_id_format"],
    }


def test_value_sets_from_reference_keep_one_row_per_input_row(
    spark: SparkSession, tmp_path: Path
) -> None:
    suite = suite_of(
        tmp_path,
        "shipments",
        "  - type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: destination_store_id}\n"
        "    value_set_from: {table: stores, column: store_id}\n"
        "  - name: store_again\n"
        "    type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: destination_store_id}\n"
        "    value_set_from: {table: stores, column: store_id}\n"
        "  - type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: carrier_id}\n"
        "    value_set_from: {table: carriers, column: carrier_id}\n",
    )
    df = spark.createDataFrame(
        [(1, "ST-0001", "CR-01"), (2, "ST-0001", "CR-99"), (3, "ST-0404", None)],
        "offset long, destination_store_id string, carrier_id string",
    )
    # Duplicated and null reference values must not multiply or match rows.
    stores = spark.createDataFrame(
        [("ST-0001", "iberia"), ("ST-0001", "iberia"), (None, "dach")],
        "store_id string, region string",
    )
    carriers = spark.createDataFrame([("CR-01",), ("CR-01",)], "carrier_id string")
    result = failures(df, suite, {"stores": stores, "carriers": carriers})
    assert result == {
        1: [],
        2: ["carrier_id_in_carriers"],
        3: ["destination_store_id_in_stores", "store_again"],
    }


def test_a_missing_reference_table_is_named(spark: SparkSession, tmp_path: Path) -> None:
    suite = suite_of(
        tmp_path,
        "ratings",
        "  - type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: sku}\n"
        "    value_set_from: {table: products, column: sku}\n",
    )
    df = spark.createDataFrame([(1, "SKU-000001")], "offset long, sku string")
    with pytest.raises(KeyError, match="needs reference values products.sku"):
        failed_expectations(df, suite, {})


@pytest.mark.parametrize(
    ("ignore_row_if", "failing"),
    [
        ("both_values_are_missing", {2, 3, 4}),
        ("either_value_is_missing", {2}),
        ("neither", {2, 3, 4, 5}),
    ],
)
def test_column_pairs_skip_rows_as_gx_does(
    spark: SparkSession, tmp_path: Path, ignore_row_if: str, failing: set[int]
) -> None:
    suite = suite_of(
        tmp_path,
        "world_events",
        "  - name: ends_after_start\n"
        "    type: expect_column_pair_values_a_to_be_greater_than_b\n"
        f"    kwargs: {{column_A: ends_at, column_B: starts_at, ignore_row_if: {ignore_row_if}}}\n",
    )
    df = spark.sql(
        "SELECT * FROM VALUES"
        " (1L, TIMESTAMP'2026-01-02', TIMESTAMP'2026-01-01'),"
        " (2L, TIMESTAMP'2026-01-01', TIMESTAMP'2026-01-01'),"
        " (3L, NULL, TIMESTAMP'2026-01-01'),"
        " (4L, TIMESTAMP'2026-01-01', NULL),"
        " (5L, NULL, NULL)"
        " AS t(offset, ends_at, starts_at)"
    )
    result = failures(df, suite)
    assert {offset for offset, names in result.items() if names} == failing


def test_failed_expectations_is_a_non_null_array_and_keeps_the_columns(
    spark: SparkSession, tmp_path: Path
) -> None:
    suite = suite_of(
        tmp_path,
        "ratings",
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: stars, min_value: 1, max_value: 5}\n",
    )
    df = spark.createDataFrame([(1, 7, "x"), (2, 3, "y")], "offset long, stars int, note string")
    result = failed_expectations(df, suite, {})
    assert result.columns == ["offset", "stars", "note", FAILED_EXPECTATIONS]
    assert result.schema[FAILED_EXPECTATIONS].dataType == ArrayType(StringType(), False)
    assert not result.schema[FAILED_EXPECTATIONS].nullable
    assertDataFrameEqual(
        result,
        spark.createDataFrame(
            [(1, 7, "x", ["stars_between_1_5"]), (2, 3, "y", [])],
            "offset long, stars int, note string, failed_expectations array<string>",
        ),
    )


def test_clean_generated_events_pass_every_shipped_suite(spark: SparkSession) -> None:
    suites = load_suites(PROJECT_HOME / "conf" / "expectations")
    references = {name: spark.createDataFrame(frame) for name, frame in reference_tables().items()}
    known = known_frames(spark, reference_values(references, suites.values(), extra=[PRODUCT_SKUS]))
    for table, rows in clean_rows().items():
        df = silver_frame(spark, table, list(rows))
        if "lines" in df.columns:
            df = fill_unknown_line_skus(df, known.listed[PRODUCT_SKUS.key])
        result = failed_expectations(df, suites[table], known).collect()
        assert len(result) == len(rows)
        failing = [(r["offset"], r[FAILED_EXPECTATIONS]) for r in result if r[FAILED_EXPECTATIONS]]
        assert not failing, f"{table}: {failing}"


LINES_DDL = (
    "topic string, partition int, offset long, "
    "lines array<struct<sku: string, quantity: int>>, unknown_line_skus int"
)


def test_unknown_line_skus_counts_lines_whose_sku_is_not_a_product(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [
            ("t", 0, 1, [("SKU-000001", 1), ("SKU-000002", 2)], None),
            ("t", 0, 2, [("SKU-999999", 1), ("SKU-000001", 1), ("SKU-999999", 3)], None),
            ("t", 1, 2, [(None, 1)], None),  # same offset, other partition: another row
            ("t", 0, 3, [], None),
            ("t", 0, 4, None, 5),
        ],
        LINES_DDL,
    )
    result = fill_unknown_line_skus(df, ["SKU-000001", "SKU-000002"])
    assert result.columns == df.columns
    assertDataFrameEqual(
        result.select("partition", "offset", "unknown_line_skus"),
        spark.createDataFrame(
            [(0, 1, 0), (0, 2, 2), (1, 2, 1), (0, 3, 0), (0, 4, None)],
            "partition int, offset long, unknown_line_skus int",
        ),
    )


def test_unknown_line_skus_is_appended_when_the_frame_lacks_it(spark: SparkSession) -> None:
    df = spark.createDataFrame(
        [("t", 0, 1, [("SKU-404", 1)])],
        "topic string, partition int, offset long, lines array<struct<sku: string, quantity: int>>",
    )
    result = fill_unknown_line_skus(df, ["SKU-000001"])
    assert result.columns == [*df.columns, "unknown_line_skus"]
    assert result.collect()[0]["unknown_line_skus"] == 1
