"""Gold tables into pandas without Spark or a JVM: what Spark wrote, read by delta-rs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from retailstream.errors import UserError
from retailstream.io.delta import read_table, write_table
from retailstream.read_lake import read, tables
from support import PROJECT_HOME

READER = """
import json, sys
from retailstream.read_lake import read
frame = read(sys.argv[1], "gold.item_ratings")
print(json.dumps({"rows": frame.sort_values("sku").to_dict("records"),
                  "spark_loaded": any(m.startswith(("pyspark", "py4j")) for m in sys.modules)}))
"""


def test_an_analyst_reads_a_gold_view_without_spark_and_sees_what_spark_wrote(
    spark: SparkSession, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    path = lake / "gold" / "item_ratings"
    first = spark.createDataFrame(
        [("SKU-1", 4.5, 2), ("SKU-2", 3.0, 1)], "sku string, average double, count long"
    )
    write_table(first, path, "overwrite")
    write_table(spark.createDataFrame([("SKU-3", 5.0, 1)], first.schema), path)

    # A fresh interpreter, as an analyst's notebook would be: no SparkSession, no JVM.
    done = subprocess.run([sys.executable, "-c", READER, str(lake)], capture_output=True,
                          text=True, cwd=PROJECT_HOME, check=False, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert not answer["spark_loaded"]
    expected = read_table(spark, path).orderBy("sku").toPandas().to_dict("records")
    assert answer["rows"] == expected

    assert list(tables(lake)) == ["gold.item_ratings"]
    assert len(read(lake, "gold.item_ratings", version=0)) == 2  # time travel: the first commit
    assert list(read(lake, "gold.item_ratings", columns=["sku"]).columns) == ["sku"]
    with pytest.raises(UserError, match="no table gold.trending_items"):
        read(lake, "gold.trending_items")
