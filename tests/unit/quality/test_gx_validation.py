"""Great Expectations runs of a suite on pandas frames: summaries, results, Data Docs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from retailstream.errors import UserError
from retailstream.quality.gx_validation import (
    gx_suite,
    open_context,
    validate_frame,
)
from retailstream.quality.reference_values import reference_values
from retailstream.quality.suites import Suite, load_suite, load_suites
from support import PROJECT_HOME

from .silver_rows import reference_tables

RATINGS = """\
table: ratings
expectations:
  - type: expect_column_values_to_not_be_null
    kwargs: {column: stars}
  - type: expect_column_values_to_be_between
    kwargs: {column: stars, min_value: 1, max_value: 5}
  - type: expect_column_values_to_be_in_set
    kwargs: {column: sku}
    value_set_from: {table: products, column: sku}
"""


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("quality")


@pytest.fixture(scope="module")
def context(output_dir: Path):  # noqa: ANN201 - GX data context
    """One GX context for the module: importing GX takes seconds."""
    return open_context(output_dir)


@pytest.fixture(scope="module")
def ratings_suite(tmp_path_factory: pytest.TempPathFactory) -> Suite:
    path = tmp_path_factory.mktemp("suites") / "ratings.yml"
    path.write_text(RATINGS)
    return load_suite(path)


def ratings_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {"stars": [5, None, 7, 1], "sku": ["SKU-000001", "SKU-000002", None, "SKU-999999"]},
        index=[10, 11, 12, 13],
    )


def test_summary_names_the_failing_rows_by_frame_index(
    context, ratings_suite: Suite, output_dir: Path
) -> None:
    known = {"products.sku": ["SKU-000001", "SKU-000002", "SKU-000003"]}
    summary = validate_frame(ratings_frame(), ratings_suite, known, output_dir, context=context)
    assert not summary.success
    assert summary.rows == 4
    assert summary.unexpected_rows() == {
        "stars_not_null": {11},
        "stars_between_1_5": {12},
        "sku_in_products": {13},
    }
    assert [o.unexpected_count for o in summary.outcomes] == [1, 1, 1]
    assert summary.lines()[0] == "ratings: 3 expectations, 3 failed, on 4 rows"


def test_result_json_and_data_docs_are_written_under_the_output_dir(
    context, ratings_suite: Suite, output_dir: Path
) -> None:
    known = {"products.sku": [f"SKU-{i:06d}" for i in range(1, 1001)]}
    summary = validate_frame(ratings_frame(), ratings_suite, known, output_dir, context=context)
    assert summary.result_path is not None and summary.data_docs_path is not None
    assert summary.result_path.is_relative_to(output_dir / "gx")
    assert summary.data_docs_path.is_file()
    result = json.loads(summary.result_path.read_text())
    assert result["success"] is False
    # The reference set is bound to the values the frame holds: same verdict, small result.
    sku_check = next(
        r for r in result["results"] if r["expectation_config"]["meta"]["name"] == "sku_in_products"
    )
    assert sku_check["expectation_config"]["kwargs"]["value_set"] == ["SKU-000001", "SKU-000002"]


def test_a_clean_frame_passes(context, ratings_suite: Suite, output_dir: Path) -> None:
    frame = pd.DataFrame({"stars": [1, 5], "sku": ["SKU-000001", "SKU-000001"]})
    known = {"products.sku": ["SKU-000001"]}
    summary = validate_frame(frame, ratings_suite, known, output_dir, context=context)
    assert summary.success
    assert summary.failed == ()
    assert summary.lines()[0] == "ratings: 3 expectations, passed, on 2 rows"


def test_missing_reference_values_are_named(
    context, ratings_suite: Suite, output_dir: Path
) -> None:
    with pytest.raises(UserError, match="needs reference values products.sku"):
        validate_frame(ratings_frame(), ratings_suite, {}, output_dir, context=context)


def test_every_shipped_expectation_becomes_its_gx_class() -> None:
    for suite in load_suites(PROJECT_HOME / "conf" / "expectations").values():
        converted = gx_suite(suite)
        assert converted.name == suite.table
        assert [e.expectation_type for e in converted.expectations] == [
            e.type for e in suite.expectations
        ]
        names = []
        for e in converted.expectations:
            assert e.meta is not None
            names.append(e.meta["name"])
        assert names == list(suite.names)


def test_reference_values_are_the_distinct_values_each_suite_needs() -> None:
    suites = load_suites(PROJECT_HOME / "conf" / "expectations").values()
    values = reference_values(reference_tables(), suites)
    assert set(values) == {
        "customers.customer_id",
        "products.sku",
        "stores.store_id",
        "stores.region",
        "routes.route_id",
        "distribution_centres.dc_id",
        "carriers.carrier_id",
    }
    assert len(values["stores.region"]) == len(set(values["stores.region"])) == 8
    without_products = {k: v for k, v in reference_tables().items() if k != "products"}
    with pytest.raises(UserError, match="no reference table products"):
        reference_values(without_products, suites)
