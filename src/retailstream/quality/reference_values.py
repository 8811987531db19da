"""The reference values an expectation suite checks ids against, gathered once.

Reference tables (`world init`) are static while a stream runs and small next
to it, so their distinct ids are collected to the driver once per job and
used as literal value sets: Spark turns a long `isin` into a hash-set lookup,
which costs each micro-batch no join and no shuffle. GX receives the same
values as suite parameters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from retailstream.errors import UserError
from retailstream.quality.expectations import KnownValues, known_frames
from retailstream.quality.suites import Suite, ValueSetSource

# The line-sku check of orders and shipments needs the product ids whatever the suites say.
PRODUCT_SKUS = ValueSetSource(table="products", column="sku")


def reference_values(
    tables: Mapping[str, pd.DataFrame | DataFrame],
    suites: Iterable[Suite],
    extra: Iterable[ValueSetSource] = (),
) -> dict[str, list[Any]]:
    """The distinct values of every reference column the suites (and `extra`)
    name, sorted and keyed by `table.column` (`products.sku`), from pandas or
    Spark reference tables (`build_world(...).tables()`, or the Delta tables of
    `world init`)."""
    sources = [s for suite in suites for s in suite.value_set_sources()]

    def distinct(source: ValueSetSource) -> list[Any]:
        if source.table not in tables:
            raise UserError(f"no reference table {source.table}: run `retailstream world init`")
        table = tables[source.table]
        if isinstance(table, pd.DataFrame):
            return sorted(table[source.column].dropna().unique().tolist())
        rows = table.select(source.column).where(table[source.column].isNotNull()).distinct()
        return sorted(row[0] for row in rows.collect())

    # One small Spark job per value set, mostly fixed latency: side by side.
    unique = list(dict.fromkeys([*sources, *extra]))
    with ThreadPoolExecutor(max_workers=4) as pool:
        return {
            source.key: column
            for source, column in zip(unique, pool.map(distinct, unique), strict=True)
        }


def known_values(
    spark: SparkSession,
    references: Mapping[str, DataFrame] | Mapping[str, pd.DataFrame],
    suites: Mapping[str, Suite],
) -> KnownValues:
    """Every reference value set the suites and the line-sku check use, gathered
    once per job: reference tables do not change while the stream runs. From
    the lake's tables, or straight from a generated world's (`World.tables()`:
    no Spark job per value set)."""
    values = reference_values(references, suites.values(), extra=[PRODUCT_SKUS])
    return known_frames(spark, values)
