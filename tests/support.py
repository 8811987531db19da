"""Helpers shared by tests of several tiers (importable: tests/ is on pythonpath)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyspark
import pytest
from pyspark.sql import DataFrame, SparkSession

from retailstream.config import LocalBrokerSettings, Settings, load_settings
from retailstream.io.delta import write_table
from retailstream.jars import classpath
from retailstream.kafka.broker import LocalBroker, free_port

PROJECT_HOME = Path(__file__).resolve().parents[1]
# The folder of the streaming tier's generated lake, given to the jobs as a file:// URI.
GENERATED_LAKE = "shop lake"
# The MovieLens sample that ships inside pyspark: 1,501 ratings, every one at the same instant.
PYSPARK_MOVIELENS = (
    Path(pyspark.__file__).parent / "data" / "mllib" / "als" / "sample_movielens_ratings.txt"
)

# JVMs a test starts that live for a few minutes at most (a job's driver and executors, a
# demo, a CLI command) compile with C1 only: C2's compiles do not pay back in that time on
# 2 cores. The test run's own session lives for the whole run and keeps C2 (C1 alone made
# test_build_views 40 % slower there); so does the notebooks' kernel (no gain measured). C1 alone reserves 48 MB for compiled code, not
# 240 MB: a demo filled that in 80 s, and a JVM whose code cache is full stops compiling.
QUICK_JVM = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"


def quick_jvm_env() -> dict[str, str]:
    """This process's environment, with every JVM started from it compiling with C1 only."""
    return {**os.environ, "JAVA_TOOL_OPTIONS": QUICK_JVM}


def broker_settings(data_dir: Path) -> LocalBrokerSettings:
    """A throwaway broker on free ports, its data under `data_dir`."""
    return LocalBrokerSettings(
        port=free_port(), controller_port=free_port(), data_dir=data_dir, heap="384m"
    )


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the installed `retailstream` command as a user would, from the project folder
    (its JVMs, if it starts any, with C1 only: `quick_jvm_env`)."""
    command = [str(Path(sys.executable).parent / "retailstream"), *args]
    return subprocess.run(
        command,
        cwd=PROJECT_HOME,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**quick_jvm_env(), **(env or {})},
        check=False,
    )


@contextlib.contextmanager
def own_pipeline(root: Path) -> Iterator[Settings]:
    """Settings of the `test` env with a broker of their own and a lake under `root`.

    For tests that must account for every record in the topics, which the
    run-wide broker shares with other tests.
    """
    broker = LocalBroker(broker_settings(root / "kafka"), classpath(PROJECT_HOME, "kafka-broker"))
    broker.start()
    try:
        yield load_settings(
            "test",
            [f"lake.root={root / 'lake'}", f"kafka.bootstrap_servers={broker.bootstrap}"],
            home=PROJECT_HOME,
        )
    finally:
        broker.stop()


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@contextlib.contextmanager
def headless_chromium(user_data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Debian's Chromium, headless, driven through its ChromeDriver (selenium)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium and ChromeDriver are needed: `make setup` installs them")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync",
        "--window-size=1280,1000", f"--user-data-dir={user_data_dir}",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def with_ml(settings: Settings, model: str, **changes: object) -> Settings:
    """`settings` with some of `ml.<model>` (`recommender`, `disruption`) changed."""
    section = getattr(settings.ml, model).model_copy(update=changes)
    return settings.model_copy(update={"ml": settings.ml.model_copy(update={model: section})})


def mlflow_runs(settings: Settings, experiment: str) -> list[Any]:
    """The runs of an MLflow experiment in the settings' store, oldest first."""
    from retailstream.ml import registry

    client = registry.client(settings.ml)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment}"
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


@contextlib.contextmanager
def mlflow_server(root: Path, timeout_s: float = 120.0) -> Iterator[str]:
    """A real `mlflow server` on a free port (its runs in SQLite under `root`, its
    artifacts served from `root/artifacts`); yields its URI, ready for requests."""
    import httpx

    port = free_port()
    log_path = root / "mlflow-server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:  # polled until it answers (or has died): its start takes seconds
            if server.poll() is not None:
                raise AssertionError(f"mlflow server exited: {log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{uri}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"mlflow server not up in {timeout_s:.0f} s"
            time.sleep(0.2)
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def small_lake(spark: SparkSession, root: Path) -> Settings:
    """Settings of the `test` env over a small lake: one table per layer, and a
    folder that is not a Delta table."""
    settings = load_settings("test", [f"lake.root={root}"], home=PROJECT_HOME)
    lake = settings.lake
    write_table(spark.createDataFrame([("shop.orders", 0, 7)], "topic string, partition int, offset long"),
                lake.table("bronze_events"), "overwrite")  # fmt: skip
    write_table(spark.createDataFrame([("O-1", 12.5), ("O-2", 30.0)], "order_id string, total double"),
                lake.table("silver/orders"), "overwrite")  # fmt: skip
    write_table(spark.createDataFrame([("SKU-1", 4.5, 2)], "sku string, average double, count long"),
                lake.table("gold/item_ratings"), "overwrite")  # fmt: skip
    (root / "gold" / "not_a_table").mkdir(parents=True)
    return settings


def copied_lake(settings: Settings, root: Path, *overrides: str) -> Settings:
    """The settings' lake copied under `root` (for a test that changes it), and settings
    over the copy (with `overrides`, `key=value`)."""
    import shutil

    shutil.copytree(settings.lake.root, root / "lake")
    return load_settings(
        settings.env,
        [f"lake.root={root / 'lake'}", f"ml.store_dir={root / 'models'}", *overrides],
        home=PROJECT_HOME,
    )


def read_until(process: subprocess.Popen[str], done: Callable[[str], bool]) -> list[str]:
    """The lines `process` prints up to the first for which `done` is true (or all of them,
    if it stops printing first)."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if done(line):
            break
    return lines


def produce_generated(settings: Settings, generator: Any, events: int) -> Any:
    """The generator's next `events` records into the topics, at their emission times;
    returns the generator's batch (its records and ground truth)."""
    from retailstream.kafka.clients import flush_or_fail, producer

    client = producer(settings.kafka.bootstrap)
    batch = generator.next_batch(events)
    for record, emitted in zip(batch.records, batch.emit_times_ms, strict=True):
        client.produce(record.topic, key=record.key, value=record.value, timestamp=emitted)
    flush_or_fail(client)
    return batch


def check_item_ratings(docs: list[Any], ratings: Any, last_ratings: int = 10) -> None:
    """item_ratings documents (gold rows or serving docs) against silver `ratings`: one
    document per rated sku, each with the count, average, histogram and newest ratings
    of that sku's valid ratings."""
    from pyspark.sql import functions as F

    expected = {
        r["sku"]: (r["n"], r["stars"], r["five"])
        for r in ratings.groupBy("sku")
        .agg(
            F.count("*").alias("n"),
            F.sum("stars").alias("stars"),
            F.count_if(F.col("stars") == 5).alias("five"),
        )
        .collect()
    }
    assert {d["sku"] for d in docs} == set(expected)
    for doc in docs:
        n, stars, five = expected[doc["sku"]]
        assert doc["ratings_count"] == n
        assert doc["average_stars"] == pytest.approx(stars / n, abs=1e-4)
        assert doc["histogram"]["5"] == five and sum(doc["histogram"].values()) == n
        times = [r["event_time"] for r in doc["last_ratings"]]
        assert times == sorted(times, reverse=True) and len(times) == min(n, last_ratings)
        assert doc["name"] and doc["category"]


def serve_available(spark: SparkSession, settings: Settings) -> None:
    """The serving path over what Kafka holds, into each store of `settings`, then stop."""
    from retailstream.io.delta import StreamTrigger
    from retailstream.jobs import serving_views

    for path in serving_views.serving_paths(spark, settings):
        path.start(StreamTrigger(available_now=True)).awaitTermination()


SERVING_VIEWS = ("item_ratings", "sales_by_region", "trending_items", "inventory_positions")
# Every table a serving store folds into: the views and trending's per-minute activity.
SERVING_TABLES = (*SERVING_VIEWS, "trending_activity")


def keyed_rows(store: Any, table: str) -> dict[tuple, dict]:
    """A serving store table's rows by their key."""
    from retailstream.views.store import VIEW_TABLES

    key = VIEW_TABLES[table].key
    return {tuple(doc[k] for k in key): doc for doc in store.rows(table)}


def assert_same_views(live: Any, rebuilt: Any) -> None:
    """Two serving stores hold the same rows in every table and the same positions."""
    from retailstream.views.serving import view_topics

    for table in SERVING_TABLES:
        rows = keyed_rows(live, table)
        assert rows, f"{table} has rows"
        assert rows == keyed_rows(rebuilt, table), table
    for view in SERVING_VIEWS:
        for topic in view_topics(view):
            assert live.positions(view, topic) == rebuilt.positions(view, topic), (view, topic)


def assert_bronze_holds_kafka(
    spark: SparkSession, bronze: DataFrame, bootstrap: str, topics: Iterable[str]
) -> None:
    """Bronze holds every record Kafka holds in `topics`, each once and byte for byte: the
    same (topic, partition, offset, key, value) rows as multisets, so that a lost record
    and a duplicated one cannot cancel out as they would in a count."""
    kafka = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", ",".join(sorted(topics)))
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    columns = ["topic", "partition", "offset", "key", "value"]
    held = bronze.select(*columns)
    missing = kafka.select(*columns).exceptAll(held).select(*columns[:3]).limit(5).collect()
    extra = held.exceptAll(kafka.select(*columns)).select(*columns[:3]).limit(5).collect()
    assert not missing and not extra, f"not in bronze: {missing}; not in Kafka (or twice): {extra}"


def with_postgres(
    settings: Settings, server: Any, database: str, stores: tuple[str, ...] = ("sqlite", "postgres")
) -> Settings:
    """`settings` feeding `stores`, with PostgreSQL's in `database` (created, with the
    roles' grants, when missing) on the running local server `server` (a `LocalPostgres`,
    e.g. the run's throwaway one)."""
    from retailstream.postgres_server import LocalPostgres

    LocalPostgres(server.settings, database).start()
    postgres = settings.postgres.model_copy(
        update={"local_server": server.settings, "database": database}
    )
    views = settings.views.model_copy(update={"stores": stores})
    return settings.model_copy(update={"postgres": postgres, "views": views})


def fresh_postgres_store(server: Any) -> Any:
    """The writer's `PostgresStore` on `server` (a `LocalPostgres`), every table emptied."""
    from retailstream.postgres_server import WRITER_ROLE
    from retailstream.views.postgres_store import PostgresStore
    from retailstream.views.store import VIEW_TABLES

    store = PostgresStore(server.conninfo(WRITER_ROLE))  # creates the tables
    tables = ", ".join(
        f'"{t}"' for t in (*VIEW_TABLES, "positions", "seen_events", "batch_watermarks")
    )
    store._db().execute(f"TRUNCATE {tables}")
    return store


def postgres_reader(server: Any) -> Any:
    """The API's read-only `PostgresStore` on `server` (a `LocalPostgres`)."""
    from retailstream.postgres_server import READER_ROLE
    from retailstream.views.postgres_store import PostgresStore

    return PostgresStore(server.conninfo(READER_ROLE), writer=False)
