"""Jobs, unchanged, under spark-submit against a Spark standalone cluster: the ingest
job on one worker, and the serving path's PostgreSQL writes from the executors of two."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.io.delta import StreamTrigger
from retailstream.jars import classpath
from retailstream.jobs import init_world, serving_views
from retailstream.kafka.broker import LocalBroker, free_port
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics, describe_topics
from retailstream.postgres_server import LocalPostgres, reader_dsn
from retailstream.standalone import StandaloneCluster
from retailstream.views.postgres_store import PostgresStore
from retailstream.views.store import open_store
from retailstream.world import DefectRates, EventGenerator, build_world
from support import (
    PROJECT_HOME,
    assert_bronze_holds_kafka,
    assert_same_views,
    own_pipeline,
    produce_generated,
    with_postgres,
)

SEED = 31
EVENTS = 500
# What a store's deduplication must withstand, and records that refine quarantines.
DEFECTS = DefectRates(duplicate=0.03, out_of_order=0.03, wrong_type=0.005)
# Short-lived JVMs (the submitted job's driver and executors) compile with C1 only: C2's
# work does not pay back within a run of a minute (on two cores, the serving job took
# 70-90 s so, 120 s and more with C2).
QUICK_JVM = "-XX:TieredStopAtLevel=1"
FOLDED_BY = re.compile(
    r"serving: postgres slices folded by (\d+) task processes on \d+ hosts"
    r" \(driver pid (\d+)\): (.*)"
)


def _cluster(state_dir: Path, workers: int = 1, worker_memory: str = "1g") -> StandaloneCluster:
    """A cluster on free ports, not yet started."""
    return StandaloneCluster(
        state_dir,
        master_port=free_port(),
        master_ui_port=free_port(),
        worker_ui_port=free_port(),
        worker_memory=worker_memory,
        workers=workers,
    )


def _spark_submit(
    cluster: StandaloneCluster, job: str, overrides: list[str], conf: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`jobs/<job>.py --env cluster --set <override>... --available-now` under spark-submit
    on `cluster`, with the resolved jars and `--conf` of `conf`. The driver's prints reach
    spark-submit's stdout (Python's stderr too), Spark's logs its stderr."""
    # The session sets spark.executor.extraJavaOptions (`session_conf`) over any --conf
    # of it, so the executors get theirs from the environment.
    conf = {"spark.executorEnv.JAVA_TOOL_OPTIONS": QUICK_JVM, **conf}
    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master", cluster.master_url,
        "--jars", ",".join(str(p) for p in classpath(PROJECT_HOME, "spark")),
        "--driver-java-options", QUICK_JVM,
        *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
        str(PROJECT_HOME / "jobs" / f"{job}.py"),
        "--env", "cluster",
        *(arg for override in overrides for arg in ("--set", override)),
        "--available-now",
    ]  # fmt: skip
    return subprocess.run(
        command,
        cwd=PROJECT_HOME,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
        check=False,
    )


def _tails(done: subprocess.CompletedProcess[str]) -> str:
    """What a failed run said: the driver's lines (stdout), then Spark's logs (stderr)."""
    return f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}"


def test_ingest_job_runs_on_a_standalone_cluster(
    settings: Settings, kafka_broker: LocalBroker, tmp_path: Path, spark: SparkSession
) -> None:
    create_topics(kafka_broker.bootstrap, settings.kafka.topics)
    client = producer(kafka_broker.bootstrap)
    for i in range(30):
        client.produce("shop.orders", key=f"O-{i}".encode(), value=b'{"order_id": "x"}')
        client.produce("logistics.weather", key=b"iberia", value=b"not json at all")
    flush_or_fail(client)
    in_kafka = sum(
        t.records for t in describe_topics(kafka_broker.bootstrap, sorted(settings.kafka.topics))
    )

    cluster = _cluster(tmp_path / "cluster")
    cluster.start()
    lake = tmp_path / "lake"
    try:
        done = _spark_submit(
            cluster,
            "ingest_events",
            [f"lake.root={lake}", f"kafka.bootstrap_servers={kafka_broker.bootstrap}"],
            {"spark.executor.memory": "768m"},
        )
        assert done.returncode == 0, _tails(done)
        state = cluster.master_state()
        completed = state["completedapps"]
        assert isinstance(completed, list)
        finished = [app["name"] for app in completed]
        assert "retailstream" in finished, "the job must have run on the cluster's executors"
    finally:
        cluster.stop()

    bronze = spark.read.format("delta").load(str(lake / "bronze_events"))
    assert bronze.count() == in_kafka
    assert_bronze_holds_kafka(spark, bronze, kafka_broker.bootstrap, settings.kafka.topics)


def _serve_locally(spark: SparkSession, settings: Settings) -> None:
    """The serving path over what Kafka holds, into each store of `settings`, then stop."""
    for path in serving_views.serving_paths(spark, settings):
        path.start(StreamTrigger(available_now=True)).awaitTermination()


def test_postgres_slices_are_folded_by_the_executors_of_two_workers(
    tmp_path: Path, spark: SparkSession, postgres_server: LocalPostgres
) -> None:
    with own_pipeline(tmp_path / "pipeline") as lake_settings:
        settings = with_postgres(
            lake_settings, postgres_server, "cluster_slices", stores=("postgres",)
        )
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        init_world.write_world(spark, settings, SEED, "small")
        generator = EventGenerator(
            build_world(SEED, "small"), SEED, datetime(2026, 6, 1, 9, tzinfo=UTC), 4.0, DEFECTS
        )
        produce_generated(settings, generator, EVENTS)

        cluster = _cluster(tmp_path / "cluster", workers=2, worker_memory="768m")
        cluster.start()
        server = postgres_server.settings
        try:
            done = _spark_submit(
                cluster,
                "serving_views",
                [
                    f"lake.root={settings.lake.root}",
                    f"kafka.bootstrap_servers={settings.kafka.bootstrap}",
                    "views.stores=[postgres]",
                    f"postgres.database={settings.postgres.database}",
                    f"postgres.local_server.port={server.port}",
                    f"postgres.local_server.data_dir={server.data_dir}",
                ],
                {
                    "spark.executor.memory": "768m",
                    # An executor on each worker, both registered before the first batch:
                    # its tasks (one per Kafka partition) then spread over the two. (The
                    # ratio counts cores of spark.cores.max: without it, none are awaited.)
                    "spark.cores.max": "2",
                    "spark.scheduler.minRegisteredResourcesRatio": "1.0",
                    "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
                },
            )
        finally:
            cluster.stop()
        assert done.returncode == 0, _tails(done)
        folded_by = FOLDED_BY.search(done.stdout)
        assert folded_by, _tails(done)
        count, driver_pid, listed = folded_by.groups()
        workers = listed.split(", ")
        assert int(count) == len(workers) >= 2, folded_by.group(0)
        assert not any(w.endswith(f":{driver_pid}") for w in workers), folded_by.group(0)

        # The same records folded by the driver into SQLite, locally.
        sqlite_views = settings.views.model_copy(update={"stores": ("sqlite",)})
        _serve_locally(spark, settings.model_copy(update={"views": sqlite_views}))
    assert_same_views(
        PostgresStore(reader_dsn(settings), writer=False), open_store(sqlite_views.store_path)
    )
