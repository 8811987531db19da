"""`retailstream demo` from a user's point of view: its own broker, live events
flowing to the views and the API, then Ctrl-C, and nothing lost."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings, load_settings
from retailstream.health.progress import read_reports
from retailstream.io import datasets
from retailstream.io.delta import read_table
from retailstream.io.truth import read_truth
from retailstream.jobs import ingest_events, serving_views
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.broker import free_port, port_in_use
from retailstream.kafka.topics import describe_topics
from retailstream.views.serving import view_topics
from retailstream.views.store import SqliteStore
from support import (
    PROJECT_HOME,
    SERVING_VIEWS,
    assert_bronze_holds_kafka,
    headless_chromium,
    quick_jvm_env,
    read_until,
    run_cli,
)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


def _page_revenue(browser: Any) -> float | None:
    value = browser.execute_script(
        "const e = document.querySelector('[data-testid=\"total-revenue\"]');"
        "return e && e.dataset.value !== undefined ? Number(e.dataset.value) : null;"
    )
    return None if value is None else float(value)


def _dashboard_follows_the_api(browser: Any, url: str) -> None:
    """The page shows the revenue the API answered, and follows it as it grows, in place."""
    browser.get(f"{url}/")
    browser.execute_script("window.__sameDocument = 'yes'")  # gone if the page reloads
    shown: list[float] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(set(shown)) < 2:
        revenue = _page_revenue(browser)
        latest = _get(f"{url}/v1/sales/regions")["total"]["revenue"]
        if revenue:
            # The page polls the same API, so what it shows is never ahead of
            # the API's answer that follows the read (revenue only grows).
            assert 0 < revenue <= latest + 0.01, (revenue, latest)
            shown.append(revenue)
        time.sleep(0.5)
    assert len(set(shown)) >= 2, f"the page did not follow the sales: {shown[-5:]}"
    assert shown == sorted(shown), "revenue only grows"
    assert browser.execute_script("return window.__sameDocument") == "yes", "no reload"


LAG_LINE = re.compile(
    r'^retailstream_stream_lag_records\{partition="(\d*)",source="([^"]+)",stream="([^"]+)"\} (\S+)$'
)


def _read_through(lake: Path) -> dict[tuple[str, str, int], int]:
    """(stream, topic, partition) -> the next offset ingest (its report) and the serving
    views (their store positions) will read: what the lag is measured from."""
    found = {}
    for report in read_reports(lake / "_health"):
        if report.name == ingest_events.QUERY_NAME:
            for source in report.sources:
                for topic, parts in source.next_offsets.items():
                    for p, offset in parts.items():
                        found[(report.name, topic, int(p))] = offset
    store = SqliteStore(lake / "_serving" / "views.db")
    for view in SERVING_VIEWS:
        for topic in view_topics(view):
            for partition, offset in store.positions(view, topic).items():
                key = ("serving_views", topic, partition)
                found[key] = min(found.get(key, offset + 1), offset + 1)
    return found


def _metrics_agree_with_kafka(url: str, lake: Path, bootstrap: str) -> None:
    """Each lag `/metrics` gives for ingest and the serving views lies between what
    Kafka's own end offsets and the streams' positions, read before and after the
    scrape, allow: ends and positions only grow while the demo runs."""

    def kafka_ends() -> dict[tuple[str, int], int]:
        return {
            (info.name, part.partition): part.latest
            for info in describe_topics(bootstrap)
            for part in info.partitions
        }

    deadline = time.monotonic() + 180
    while not any(k[0] == "ingest_events" for k in _read_through(lake)):
        assert time.monotonic() < deadline, "ingest reported no batch within 180 s"
        time.sleep(1)
    ends_before, read_before = kafka_ends(), _read_through(lake)
    with urllib.request.urlopen(f"{url}/metrics", timeout=60) as answer:
        text = answer.read().decode()
    ends_after, read_after = kafka_ends(), _read_through(lake)
    checked = set()
    for line in text.splitlines():
        match = LAG_LINE.match(line)
        if not match or match.group(3) not in {"ingest_events", "serving_views"}:
            continue
        partition, topic, stream, value = match.groups()
        key, place = (stream, topic, int(partition)), (topic, int(partition))
        low = ends_before[place] - read_after.get(key, read_before[key])
        high = ends_after[place] - read_before[key]
        assert max(0, low) <= float(value) <= high, (line, low, high)
        checked.add(key)
    streams = {stream for stream, _, _ in checked}
    assert streams == {"ingest_events", "serving_views"}, text
    ingested = {(t, p) for s, t, p in read_before if s == "ingest_events"}
    assert {(t, p) for s, t, p in checked if s == "ingest_events"} == ingested, text
    events = {place for place in ends_before if not place[0].startswith(("serving.", "_"))}
    assert ingested == events, "every partition of the event topics"
    assert len({topic for topic, _ in events}) == 6, events


def _where_counts_differ(
    spark: SparkSession, bronze: DataFrame, port: int, output: str, published: int
) -> str:
    """Per topic and partition: what the producer said, what Kafka holds, what bronze holds."""
    kafka = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", f"127.0.0.1:{port}")
        .option("subscribePattern", ".*")
        .load()
        .groupBy("topic", "partition")
        .agg(F.count("*").alias("kafka"), F.max("offset").alias("kafka_max"))
    )
    held = bronze.groupBy("topic", "partition").agg(
        F.count("*").alias("bronze"), F.max("offset").alias("bronze_max")
    )
    rows = kafka.join(held, ["topic", "partition"], "full").orderBy("topic", "partition")
    table = "\n".join(str(r.asDict()) for r in rows.collect())
    said = output[output.index("published ") :][:800]
    return f"published {published}, bronze {bronze.count()}\n{said}\n{table}"


def test_demo_serves_live_views_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, spark: SparkSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    port, api_port = free_port(), free_port()
    flags = [
        "--set", f"lake.root={tmp_path / 'lake'}",
        "--set", f"kafka.local_broker.data_dir={tmp_path / 'kafka'}",
        "--set", f"kafka.local_broker.port={port}",
        "--set", f"kafka.local_broker.controller_port={free_port()}",
        "--set", f"spark.driver_log={tmp_path / 'driver.log'}",
        # The serving path in real-time mode: a task slot per partition it reads.
        "--set", "spark.master=local[16]",
        # A clean stream: the inventory view must then equal the world's own stock.
        "--set", "generator.defect_share=0",
    ]  # fmt: skip
    demo = subprocess.Popen(
        [str(Path(sys.executable).parent / "retailstream"), "demo", "--rate", "100",
         "--set", f"serve.port={api_port}", *flags],
        cwd=PROJECT_HOME, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # a process group of its own, as in a terminal
        env=quick_jvm_env(),  # its JVMs compile with C1 only (QUICK_JVM)
    )  # fmt: skip
    lines: list[str] = []
    url = f"http://127.0.0.1:{api_port}"
    try:
        # The API comes first, before the broker and Spark, and already answers with the
        # world's catalogue and initial stock.
        lines = read_until(demo, lambda line: line.startswith("[1/5]"))
        assert lines and lines[-1].startswith("[1/5]") and f"{url}/" in lines[-1], lines
        stores = _get(f"{url}/v1/sales/stores")["stores"]
        store_id = next(s["store_id"] for s in stores if s["lat"] is not None)  # not online
        assert _get(f"{url}/v1/inventory/{store_id}")["count"] > 0, "no stock before Spark"
        lines += read_until(demo, lambda line: line.startswith("[5/5]"))
        if not lines[-1].startswith("[5/5]"):
            demo.wait(timeout=120)
            raise AssertionError("".join(lines) + (demo.stderr.read() if demo.stderr else ""))
        phases = [line[:5] for line in lines if line.startswith("[")]
        assert phases == ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"], lines
        # The views fill while events flow: sales appear and keep growing.
        deadline = time.monotonic() + 180
        revenue = 0.0
        while time.monotonic() < deadline and revenue == 0:
            revenue = _get(f"{url}/v1/sales/regions")["total"]["revenue"]
            time.sleep(2)
        assert revenue > 0, "no sales reached the API"
        while time.monotonic() < deadline:
            if _get(f"{url}/v1/sales/regions")["total"]["revenue"] > revenue:
                break
            time.sleep(2)
        else:
            raise AssertionError("sales did not grow while events flowed")
        assert _get(f"{url}/v1/health")["status"] in {"ok", "degraded"}
        _metrics_agree_with_kafka(url, tmp_path / "lake", f"127.0.0.1:{port}")
        with headless_chromium(tmp_path / "chromium", monkeypatch) as browser:
            _dashboard_follows_the_api(browser, url)
    finally:
        # Ctrl-C in a terminal reaches every process of the group: the driver and its JVM.
        os.killpg(demo.pid, signal.SIGINT)
        out, err = demo.communicate(timeout=180)
    lines.append(out)
    output = "".join(lines)
    assert demo.returncode == 0, output + err
    assert "Traceback" not in output + err, err
    # Every query stopped between its Py4J calls, none failed: not PySpark's
    # cancel-all-jobs on SIGINT, nor a stream thread dying as it stopped mid-batch.
    driver_log = (tmp_path / "driver.log").read_text()
    for failure in ("cancellation of all jobs", "terminated with error", "StackOverflowError"):
        assert failure not in driver_log, failure
    assert f"Kafka broker started on 127.0.0.1:{port}" in output
    assert "stopped cleanly" in output
    assert not port_in_use("127.0.0.1", port)
    assert not port_in_use("127.0.0.1", api_port)
    published = int(output.split("published ")[1].split()[0])
    assert published > 0

    # Nothing lost: what the demo had not ingested yet is in Kafka, and the next
    # ingest run (from the demo's checkpoint, in this session: a `run ingest` process
    # would add a JVM start and nothing else) brings bronze to exactly what was published.
    settings = load_settings(None, [f for f in flags if f != "--set"], home=PROJECT_HOME)
    restart = run_cli("kafka", "start", *flags)
    assert restart.returncode == 0, restart.stderr
    try:
        ingest_events.run(spark, StreamRun(settings, available_now=True))
        bronze = read_table(spark, tmp_path / "lake" / datasets.BRONZE)
        held = bronze.count()
        if held != published:  # say where the difference is before the broker goes
            raise AssertionError(_where_counts_differ(spark, bronze, port, output, published))
        assert_bronze_holds_kafka(spark, bronze, f"127.0.0.1:{port}", settings.kafka.topics)
        # The world resumes where the demo left it, and the inventory view agrees with it.
        more = run_cli("produce", "--events", "3000", "--rate", "1500", "--quiet", *flags)
        assert more.returncode == 0, more.stderr
        assert "resuming the saved world" in more.stderr, more.stderr
        serving_views.run(spark, StreamRun(settings, available_now=True))
    finally:
        run_cli("kafka", "stop", *flags)
    _inventory_equals_the_worlds_stock(spark, settings)


def _inventory_equals_the_worlds_stock(spark: SparkSession, settings: Settings) -> None:
    truth = read_truth(spark, settings.lake.root, "stock")
    assert truth is not None, "the producer wrote its stock"
    newest_row = truth.agg(F.max("records_emitted")).first()
    assert newest_row is not None
    newest = newest_row[0]
    stock = {
        (r.store_id, r.sku): r.on_hand
        for r in truth.where(F.col("records_emitted") == newest).collect()
    }
    positions = SqliteStore(settings.views.store_path).rows("inventory_positions")
    shown = {(p["store_id"], p["sku"]): p["on_hand"] for p in positions}
    assert shown == stock
    assert min(shown.values()) >= 0
    assert sum(p["sold"] for p in positions) > 0, "the runs sold something"
