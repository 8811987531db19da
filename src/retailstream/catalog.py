"""Readable SQL names for the lake's Delta tables: `bronze.events`, `silver.orders`, `gold.item_ratings`.

The lake is the source of truth; the catalog only points at it. Every Delta
table found under the lake root gets a name `<layer>.<table>` from where it
lives (`silver/orders` is `silver.orders`, `reference/stores` is
`reference.stores`), and the few top-level tables have fixed names (below).
Registering is idempotent and cheap (an external table per path, no data
copied), so each session that wants SQL does it at start: Spark's default
catalog lives in memory, and a table the streams create later is found the next
time. A name that points elsewhere is re-pointed at this lake.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io import lake_names


def lake_tables(settings: Settings) -> dict[str, Path]:
    """{readable name: Delta table path} of every table the lake holds now, sorted by name."""
    return lake_names.lake_tables(settings.lake.root)


def register(spark: SparkSession, settings: Settings) -> dict[str, Path]:
    """Create the databases and an external table per lake table (if not there); returns them."""
    tables = lake_tables(settings)
    register_tables(spark, tables)
    return tables


def register_tables(spark: SparkSession, tables: dict[str, Path]) -> None:
    """Point each readable name at its Delta table path (creating its database)."""
    for database in sorted({name.split(".")[0] for name in tables}):
        spark.sql(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    for name, path in tables.items():
        _point(spark, name, path)


def _point(spark: SparkSession, name: str, path: Path) -> None:
    """Make `name` an external table over the Delta table at `path` (re-pointed if it
    pointed elsewhere: dropping an external table drops only the name, never data)."""
    database, table = name.split(".")
    quoted = f"`{database}`.`{table}`"
    if spark.catalog.tableExists(name):
        if spark.catalog.getTable(name).tableType != "EXTERNAL":
            raise UserError(f"{name} exists and is not a lake table: rename or drop it first")
        spark.sql(f"DROP TABLE {quoted}")
    location = str(path).replace("'", "\\'")
    spark.sql(f"CREATE TABLE {quoted} USING DELTA LOCATION '{location}'")


def run_query(spark: SparkSession, statement: str, limit: int) -> str:
    """The result of one SQL statement as a text table (at most `limit` rows shown);
    a statement Spark cannot parse or resolve is a UserError with Spark's reason."""
    from pyspark.errors import AnalysisException, ParseException

    try:
        frame = spark.sql(statement)
        rows = frame.limit(limit + 1).toPandas()
    except (AnalysisException, ParseException) as error:
        reason = str(error).strip().splitlines()[0]
        raise UserError(f"SQL error: {reason} (tables: `retailstream sql --tables`)") from None
    if rows.empty:
        return "(no rows)"
    text = rows.head(limit).to_string(index=False)
    if len(rows) > limit:
        text += f"\n... more than {limit:,} rows (raise --limit)"
    return text


def sql_command(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    """`retailstream sql [STATEMENT] [--limit N] [--tables]`."""
    tables = register(spark, settings)
    if args.tables or not args.statement:
        width = max((len(name) for name in tables), default=0)
        listing = "\n".join(f"{name:{width}}  {path}" for name, path in tables.items())
        print(listing or f"no tables under {settings.lake.root}: run the pipeline first")
        return 0
    print(run_query(spark, args.statement, args.limit))
    return 0
