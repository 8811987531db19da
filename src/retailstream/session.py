"""The SparkSession factory: Delta and the Kafka connector, from the cached jars.

Run directly (`retailstream run ...`, notebooks, tests), the session is built
from config: `spark.master`, the resolved jars, small-machine defaults.
Launched by `spark-submit`, the master and the jars are spark-submit's
(`--master`, `--jars`): config does not override what the user passed there.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.jars import MARKER_CLASSES, classpath
from retailstream.javacheck import java_executable

ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
# Scheduler pools (resources/fairscheduler.xml): the serving path's and the lake path's.
SERVING_POOL = "serving"
LAKE_POOL = "lake"


def launched_by_spark_submit() -> bool:
    """True when this Python process is the driver of a `spark-submit` run.

    spark-submit starts the JVM first and hands its gateway to Python through
    this variable; run from plain Python, PySpark starts the JVM itself.
    """
    return "PYSPARK_GATEWAY_PORT" in os.environ


def _resource(name: str) -> Path:
    return Path(str(resources.files("retailstream").joinpath(f"resources/{name}")))


def _log4j_config() -> Path:
    return _resource("log4j2-spark.properties")


@contextlib.contextmanager
def sql_conf(spark: SparkSession, values: dict[str, str]) -> Iterator[None]:
    """These SQL settings while inside (a streaming query keeps those it started with)."""
    before: dict[str, str | None] = {key: spark.conf.get(key, None) for key in values}
    for key, value in values.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, old)


@contextlib.contextmanager
def scheduler_pool(spark: SparkSession, pool: str) -> Iterator[None]:
    """Queries started inside run their jobs in `pool` (a streaming query keeps the
    local properties of the thread that started it)."""
    context = spark.sparkContext
    before = context.getLocalProperty("spark.scheduler.pool")
    context.setLocalProperty("spark.scheduler.pool", pool)
    try:
        yield
    finally:
        context.setLocalProperty("spark.scheduler.pool", before)  # type: ignore[arg-type]


def built_side_by_side(build: Callable[[str], DataFrame], tables: Sequence[str]) -> list[DataFrame]:
    """`build(table)` for each of `tables`, in threads, in `tables` order.

    A plan is built column by column, a Py4J round trip each: the serving path's
    four topics cost about 34,000, and built side by side their plans took 1.7 s
    where one after the other took 4.6 s.
    """
    with ThreadPoolExecutor(max_workers=max(1, len(tables))) as pool:
        return list(pool.map(build, tables))


CODEGEN_CACHE_ENTRIES = 2000


def session_conf(settings: Settings) -> dict[str, str]:
    """Spark settings every retailstream session gets (before `spark.conf` overrides)."""
    spark = settings.spark
    conf = {
        "spark.app.name": spark.app_name,
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.sql.shuffle.partitions": str(spark.shuffle_partitions),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.streaming.stateStore.providerClass": ROCKSDB_PROVIDER,
        # A commit writes what the batch changed, not the changed SST files: the
        # deduplication state holds an hour of event ids, a batch adds seconds' worth.
        "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
        # Generated classes are cached by their source, 100 by default. Refine alone
        # (six tables: parsing, checks, Delta's writes and log replays) uses about 190
        # for a data batch and the no-data batch after it, so with 100 it compiled them
        # all again every time (4.5-5 s of Janino), and the JIT then compiled the new
        # classes. A class is tens of kB.
        "spark.sql.codegen.cache.maxEntries": str(CODEGEN_CACHE_ENTRIES),
        "spark.sql.warehouse.dir": str(settings.lake.root / "_warehouse"),
        "spark.ui.enabled": str(spark.ui_enabled).lower(),
        "spark.ui.showConsoleProgress": "false",
        # Small tables: Delta's default of 50 snapshot partitions costs seconds per query here.
        "spark.databricks.delta.snapshotPartitions": str(max(2, spark.shuffle_partitions)),
        "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
        # pandas <-> Spark through Arrow: reference tables of 100k rows in a second.
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Pools per path (`scheduler_pool`): the serving path's small jobs overtake
        # the lake's. Jobs outside a pool run first come, first served, as before.
        "spark.scheduler.mode": "FAIR",
        "spark.scheduler.allocation.file": str(_resource("fairscheduler.xml")),
    }
    conf.update(spark.conf)
    return conf


# Stopping a foreachBatch query mid-batch makes Spark match the Python error against
# `((.|\r\n|\r|\n)*)InterruptedException` (StreamExecution.PROXY_ERROR), which recurses
# once per character of a message tens of kB long: with the default 1 MB thread stack the
# stream thread dies of a StackOverflowError instead of stopping. Stacks are reserved,
# not committed: a larger one costs address space only.
QUERY_THREAD_STACK = "-Xss32m"


def build_spark(settings: Settings) -> SparkSession:
    """Return the (one) SparkSession of this process, configured from `settings`.

    Raises `UserError` when Java or the resolved jars are missing, or when the
    session cannot load Delta (for example spark-submit without `--jars`).
    """
    java_executable()
    builder = SparkSession.builder
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    if not launched_by_spark_submit():
        # Python workers (pandas UDFs: the event store's hash chain) run in this
        # interpreter's environment, not whatever `python3` comes first on the PATH.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        jars = classpath(settings.home, "spark")
        builder = (
            builder.master(settings.spark.master)
            .config("spark.jars", ",".join(str(j) for j in jars))
            .config("spark.driver.memory", settings.spark.driver_memory)
            .config(
                "spark.driver.extraJavaOptions",
                f"-Duser.timezone=UTC -Dlog4j2.configurationFile=file:{_log4j_config()} "
                f"{QUERY_THREAD_STACK}",
            )
            # Local mode talks to itself only: loopback avoids hostname look-ups.
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
        )
    try:
        with _stderr_to(None if launched_by_spark_submit() else settings.spark.driver_log):
            session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: say why in one line
        log = f" (driver log: {settings.spark.driver_log})" if settings.spark.driver_log else ""
        raise UserError(f"Spark did not start: {str(exc).splitlines()[0]}{log}") from exc
    session.sparkContext.setLogLevel(settings.spark.log_level)
    _require_class(session, MARKER_CLASSES["spark"])
    return session


@contextlib.contextmanager
def _stderr_to(log: Path | None) -> Iterator[None]:
    """Point file descriptor 2 at `log` while the driver JVM is launched.

    The JVM inherits the descriptor, so its console output keeps going to the
    log file; Python's own stderr is restored as soon as the JVM is up.
    """
    if log is None or SparkSession.getActiveSession() is not None:
        yield
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    saved = os.dup(2)
    try:
        with log.open("ab") as target:
            os.dup2(target.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _require_class(session: SparkSession, name: str) -> None:
    jvm = session.sparkContext._jvm
    assert jvm is not None, "a running SparkContext has its JVM gateway"
    loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
    try:
        jvm.java.lang.Class.forName(name, False, loader)
    except Exception as exc:
        raise UserError(
            f"{name} is not on Spark's classpath: run `make setup`; with spark-submit, pass "
            '--jars "$(retailstream jars path spark)" or use `retailstream submit`'
        ) from exc
