"""What a notebook needs first: a Spark session over a lake that has data in it.

`open_lake()` explores the configured lake (`lake.root`, for example the one
`retailstream demo` fills) when it holds an event store. Otherwise it uses the
sample lake under `data/sample-lake`, building it the first time (about two
minutes: a few simulated days through the whole pipeline), with its own MLflow
store so that models trained while exploring never reach the served registry.
Either way every table gets its readable SQL name (`gold.item_ratings`, ...).

Configuration comes as for every command: `RETAILSTREAM_ENV` and
`RETAILSTREAM_<SECTION>__<KEY>` variables (`RETAILSTREAM_LAKE__ROOT=...`).
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from retailstream import catalog
from retailstream.config import Settings, load_settings
from retailstream.io.datasets import bronze_table
from retailstream.io.delta import has_commits
from retailstream.jobs import sample_lake
from retailstream.session import build_spark

SAMPLE_LAKE = Path("data/sample-lake")


def _holds_events(settings: Settings) -> bool:
    return has_commits(bronze_table(settings))


def lake_settings() -> Settings:
    """The configured lake's settings if it holds events, else the sample lake's."""
    settings = load_settings()
    if _holds_events(settings):
        return settings
    sample = settings.home / SAMPLE_LAKE
    return load_settings(overrides=[f"lake.root={sample}", f"ml.store_dir={sample / '_models'}"])


def open_lake() -> tuple[SparkSession, Settings]:
    """The session and settings of the lake to explore (see the module's doc)."""
    settings = lake_settings()
    spark = build_spark(settings)
    if not _holds_events(settings):
        print(f"no event store yet: building the sample lake in {settings.lake.root} (~2 min)")
        sample_lake.build(spark, settings, sample_lake.SampleSpec())
    tables = catalog.register(spark, settings)
    built = sample_lake.describe(settings)
    what = f"sample of {built['days']} days from {built['start'][:10]}" if built else "lake"
    print(f"{what} in {settings.lake.root}: {len(tables)} tables, e.g. gold.sales_by_region")
    return spark, settings
