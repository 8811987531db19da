"""SQL over the lake: readable table names over real Delta tables, and `retailstream sql`."""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import SparkSession

from retailstream.catalog import register, run_query
from retailstream.errors import UserError
from retailstream.io.delta import read_table, write_table
from support import run_cli, small_lake


def test_every_lake_table_gets_a_readable_name_and_answers_sql(
    spark: SparkSession, tmp_path: Path
) -> None:
    settings = small_lake(spark, tmp_path / "lake")
    tables = register(spark, settings)
    assert set(tables) == {"bronze.events", "silver.orders", "gold.item_ratings"}
    total = spark.sql("SELECT sum(total) FROM silver.orders").first()
    assert total is not None
    assert total[0] == 42.5
    text = run_query(spark, "SELECT sku, average FROM gold.item_ratings", limit=10)
    assert "SKU-1" in text and "4.5" in text
    assert "more than 1 rows" in run_query(spark, "SELECT * FROM silver.orders", limit=1)

    # Another lake in the same session: the names follow it, the first lake's data stays.
    other = small_lake(spark, tmp_path / "other")
    write_table(spark.createDataFrame([("O-3", 1.0)], "order_id string, total double"),
                other.lake.table("silver/orders"))  # fmt: skip
    register(spark, other)
    count = spark.sql("SELECT count(*) FROM silver.orders").first()
    assert count is not None
    assert count[0] == 3
    assert read_table(spark, settings.lake.table("silver/orders")).count() == 2


def test_a_bad_statement_is_a_clear_error(spark: SparkSession, tmp_path: Path) -> None:
    register(spark, small_lake(spark, tmp_path / "lake"))
    for statement in ("SELEC 1", "SELECT * FROM gold.no_such_view"):
        try:
            run_query(spark, statement, limit=5)
        except UserError as error:
            assert str(error).startswith("SQL error:") and "\n" not in str(error)
        else:
            raise AssertionError(f"{statement!r} should fail")


def test_sql_command_prints_a_table_and_lists_the_tables(
    spark: SparkSession, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    small_lake(spark, root)
    flags = ["--env", "test", "--set", f"lake.root={root}",
             "--set", f"spark.driver_log={tmp_path / 'driver.log'}"]  # fmt: skip
    answer = run_cli("sql", "SELECT order_id, total FROM silver.orders ORDER BY order_id", *flags)
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.strip().splitlines()
    assert lines[0].split() == ["order_id", "total"] and lines[1].split() == ["O-1", "12.5"]
    listed = run_cli("sql", "--tables", *flags)
    assert listed.returncode == 0 and "gold.item_ratings" in listed.stdout
    # A bad statement's one-line error: test_a_bad_statement_is_a_clear_error (in process,
    # the CLI prints a UserError as it is: test_cli), without a third Spark start here.
