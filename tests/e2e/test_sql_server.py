"""`retailstream sql-server` from a BI user's side: beeline (the JDBC client shipped in
pyspark) connects over the HiveServer2 protocol and queries a gold view; a table the
streams create later shows up; SIGTERM stops the server and frees the port."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from pyspark.sql import SparkSession

from retailstream.io.delta import write_table
from retailstream.kafka.broker import free_port, port_in_use
from support import PROJECT_HOME, quick_jvm_env, read_until, small_lake

BIN = Path(sys.executable).parent


def _beeline(url: str, statement: str) -> list[str]:
    """The result rows of `statement` as CSV lines (header first), through beeline."""
    done = subprocess.run(
        [str(BIN / "beeline"), "-u", url, "--outputformat=csv2", "--silent=true", "-e", statement],
        capture_output=True, text=True, timeout=180,
        # As in an activated virtualenv: beeline finds Spark through that python.
        env={**quick_jvm_env(), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    # Beeline echoes its prompt ("0: jdbc:hive2://...> ") in front of the output.
    lines = (re.sub(r"^\d+: jdbc:hive2://\S+> ?", "", line) for line in done.stdout.splitlines())
    return [line for line in lines if line.strip()]


def test_beeline_queries_a_gold_view_over_jdbc(spark: SparkSession, tmp_path: Path) -> None:
    settings = small_lake(spark, tmp_path / "lake")
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "retailstream"), "sql-server", "--port", str(port), "--refresh", "1",
         "--set", f"lake.root={settings.lake.root}",
         "--set", f"spark.driver_log={tmp_path / 'driver.log'}", "--env", "test"],
        cwd=PROJECT_HOME, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=quick_jvm_env(),
    )  # fmt: skip
    lines: list[str] = []
    try:
        stdout, stderr = server.stdout, server.stderr
        assert stdout is not None and stderr is not None  # both piped
        lines = read_until(server, lambda line: "Ctrl-C stops" in line)
        url = f"jdbc:hive2://127.0.0.1:{port}/default"
        assert any(url in line for line in lines), "".join(lines) + stderr.read()
        follower = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
        follower.start()

        rows = _beeline(url, "SELECT sku, average, `count` FROM gold.item_ratings")
        assert rows == ["sku,average,count", "SKU-1,4.5,2"]
        assert "sales_by_region" not in "".join(_beeline(url, "SHOW TABLES IN gold"))

        # A view the streams create while the server runs is found on the next refresh.
        write_table(
            spark.createDataFrame([("north", 120.0)], "region string, revenue double"),
            settings.lake.table("gold/sales_by_region"),
        )
        deadline = time.monotonic() + 60
        while not any("new table: gold.sales_by_region" in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        assert _beeline(url, "SELECT revenue FROM gold.sales_by_region") == ["revenue", "120.0"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    assert server.returncode == 0, "".join(lines)
    assert not port_in_use("127.0.0.1", port)
