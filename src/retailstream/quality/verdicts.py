"""The one definition of validity, shared by refine and the serving path (pure).

A parsed batch of one topic (`transforms.parse.parse_events`) gets `_reasons`:
its parse errors, then the names of the expectations of its suite it fails.
A row with no reason is valid. Refine writes the valid rows to silver and the
rest to the quarantine; the serving path folds only the valid rows into its
views, so an event that refine quarantines never counts in a view.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retailstream.quality.expectations import (
    KnownValues,
    failed_expectations,
    fill_unknown_line_skus,
)
from retailstream.quality.reference_values import PRODUCT_SKUS
from retailstream.quality.suites import Suite
from retailstream.schemas import EventContract

REASONS = "_reasons"


def with_reasons(validated: DataFrame) -> DataFrame:
    """`validated` plus `_reasons`: its parse errors then its failed expectations."""
    return validated.withColumn(
        REASONS, F.concat(F.col("parse_errors"), F.col("failed_expectations"))
    )


def mark_events(
    parsed: DataFrame, contract: EventContract, suite: Suite, known: KnownValues
) -> DataFrame:
    """`parsed` (the output of `parse_events` for `contract`) checked against `suite`.

    `known` holds the reference value sets the suite and the line-sku check
    need (`known_frames`). Adds `failed_expectations` and `_reasons`; row order
    is not kept, the row count is.
    """
    checked = parsed
    if contract.line_fields:
        checked = fill_unknown_line_skus(checked, known.listed[PRODUCT_SKUS.key])
    return with_reasons(failed_expectations(checked, suite, known))
