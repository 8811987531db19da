"""Suite files: every shipped suite loads and fits its silver table; bad entries are refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from pyspark.sql.types import IntegerType, NumericType, StringType

from retailstream.errors import ConfigError
from retailstream.quality.suites import (
    BETWEEN,
    IN_SET,
    MATCH_REGEX,
    NOT_NULL,
    NotNullKwargs,
    Suite,
    load_suite,
    load_suites,
)
from retailstream.schemas import CONTRACTS_BY_TABLE, silver_schema
from support import PROJECT_HOME

from .silver_rows import reference_tables

SUITES_DIR = PROJECT_HOME / "conf" / "expectations"


@pytest.fixture(scope="module")
def suites():  # noqa: ANN201 - dict[str, Suite]
    return load_suites(SUITES_DIR)


def test_every_silver_table_has_a_shipped_suite(suites) -> None:
    assert set(suites) == set(CONTRACTS_BY_TABLE)


def test_every_column_a_suite_names_exists_with_a_fitting_type(suites) -> None:
    for table, suite in suites.items():
        types = {f.name: f.dataType for f in silver_schema(table).fields}
        for e in suite.expectations:
            for column in e.columns:
                assert column in types, f"{table}: {e.name} names unknown column {column}"
            column_type = types[e.columns[0]]
            if e.type == MATCH_REGEX:
                assert isinstance(column_type, StringType), f"{table}: {e.name}"
            if e.type == BETWEEN:
                assert isinstance(column_type, NumericType), f"{table}: {e.name}"
            if e.type == IN_SET and e.kwargs.value_set is not None:
                python_type = int if isinstance(column_type, IntegerType) else str
                assert all(type(v) is python_type for v in e.kwargs.value_set), e.name


def test_every_required_field_has_a_not_null_expectation(suites) -> None:
    for table, contract in CONTRACTS_BY_TABLE.items():
        not_null = {e.columns[0] for e in suites[table].expectations if e.type == NOT_NULL}
        required = {f.name for f in contract.all_fields if f.required}
        optional = {f.name for f in contract.all_fields if not f.required}
        assert required <= not_null, f"{table}: no not-null on {required - not_null}"
        assert not optional & not_null, f"{table}: optional fields must allow nulls"


def test_every_suite_bounds_event_lag_to_five_minutes_early_and_an_hour_late(suites) -> None:
    for table, suite in suites.items():
        # Found by what it checks, not by its name (which is built from these bounds).
        lags = [
            e
            for e in suite.expectations
            if e.type == BETWEEN and e.columns == ("event_lag_seconds",)
        ]
        assert len(lags) == 1, f"{table}: {len(lags)} event-lag expectations"
        assert (lags[0].kwargs.min_value, lags[0].kwargs.max_value) == (-300, 3600), table


def test_reference_value_sets_name_real_reference_columns(suites) -> None:
    tables = reference_tables()
    sources = {s for suite in suites.values() for s in suite.value_set_sources()}
    assert {s.table for s in sources} >= {"products", "customers", "stores", "routes"}
    for source in sources:
        assert source.column in tables[source.table].columns, source.key


def test_names_are_readable_and_unique(suites) -> None:
    ratings = suites["ratings"]
    assert "stars_between_1_5" in ratings.names
    assert "sku_in_products" in ratings.names
    assert "customer_id_format" in ratings.names
    for suite in suites.values():
        assert len(set(suite.names)) == len(suite.names)


def test_suite_objects_are_frozen(suites: dict[str, Suite]) -> None:
    suite = suites["ratings"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        suite.table = "orders"  # type: ignore[misc]
    assert isinstance(suite.expectations[0].kwargs, NotNullKwargs)  # event_id not null
    with pytest.raises(ValueError):
        suite.expectations[0].kwargs.column = "sku"  # type: ignore[misc]


def _suite_file(tmp_path: Path, body: str, table: str = "ratings") -> Path:
    path = tmp_path / f"{table}.yml"
    path.write_text(f"table: {table}\nexpectations:\n{body}")
    return path


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "  - type: expect_column_values_to_be_unique\n    kwargs: {column: sku}\n",
            "expectations[0] (expect_column_values_to_be_unique): unknown expectation type",
        ),
        (
            "  - type: expect_column_values_to_not_be_null\n    kwargs: {column: sku, mostly: 0.9}\n",
            "kwargs mostly: Extra inputs are not permitted",
        ),
        (
            "  - type: expect_column_values_to_not_be_null\n    kwargs: {column: stras}\n",
            "no column stras in the silver table",
        ),
        (
            "  - type: expect_column_values_to_be_between\n    kwargs: {column: stars}\n",
            "needs min_value, max_value or both",
        ),
        (
            "  - type: expect_column_values_to_be_in_set\n    kwargs: {column: sku}\n",
            "give either kwargs.value_set or value_set_from",
        ),
        (
            "  - type: expect_column_values_to_match_regex\n"
            "    kwargs: {column: sku, regex: '^SKU-\\d+$'}\n",
            "spell the class out",
        ),
        (
            "  - type: expect_column_values_to_not_be_null\n    kwargs: {column: sku}\n"
            "    value_set_from: {table: products, column: sku}\n",
            "value_set_from applies only to",
        ),
        (
            "  - type: expect_column_values_to_not_be_null\n    kwargs: {column: sku}\n"
            "  - type: expect_column_values_to_not_be_null\n    kwargs: {column: sku}\n",
            "expectations[1] has the same name 'sku_not_null' as expectations[0]",
        ),
        ("  - kwargs: {column: sku}\n", "expectations[0]: type: Field required"),
    ],
    ids=[
        "unknown-type",
        "unknown-kwarg",
        "unknown-column",
        "unbounded-between",
        "in-set-without-values",
        "non-portable-regex",
        "value-set-from-on-not-null",
        "duplicate-name",
        "no-type",
    ],
)
def test_bad_entries_are_refused_naming_the_file_and_entry(
    tmp_path: Path, entry: str, message: str
) -> None:
    path = _suite_file(tmp_path, entry)
    with pytest.raises(ConfigError) as error:
        load_suite(path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_a_suite_must_be_named_after_its_silver_table(tmp_path: Path) -> None:
    path = tmp_path / "ratings.yml"
    path.write_text("table: orders\nexpectations: []\n")
    with pytest.raises(ConfigError, match="name the file after it"):
        load_suite(path)
    path.write_text("table: returns\nexpectations: []\n")
    with pytest.raises(ConfigError, match="unknown table 'returns'"):
        load_suite(path)


def test_names_are_derived_unless_given(tmp_path: Path) -> None:
    path = _suite_file(
        tmp_path,
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: stars, min_value: 1, max_value: 5}\n"
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: event_lag_seconds, min_value: -300, max_value: 3600.5}\n"
        "  - type: expect_column_values_to_be_between\n"
        "    kwargs: {column: stars, min_value: 0, strict_min: true}\n"
        "  - type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: sku}\n"
        "    value_set_from: {table: products, column: sku}\n"
        "  - type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: event_type, value_set: [item_rated]}\n"
        "  - name: stars_known\n"
        "    type: expect_column_values_to_be_in_set\n"
        "    kwargs: {column: stars, value_set: [1, 2, 3, 4, 5]}\n"
        "  - type: expect_column_pair_values_a_to_be_greater_than_b\n"
        "    kwargs: {column_A: kafka_timestamp, column_B: event_time, or_equal: true}\n",
    )
    assert load_suite(path).names == (
        "stars_between_1_5",
        "event_lag_seconds_between_-300_3600.5",
        "stars_above_0",
        "sku_in_products",
        "event_type_in_set",
        "stars_known",
        "kafka_timestamp_at_least_event_time",
    )


def test_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no expectation suites"):
        load_suites(tmp_path)
