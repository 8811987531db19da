"""Every job, unchanged, under spark-submit against a Spark standalone cluster of two
workers, one after the other on one lake: ingest, refine, the gold views, the serving path
(its PostgreSQL writes from the executors of both workers) and the recommender's training
on PySpark's MovieLens sample, tracked on a real MLflow server as a cluster's jobs would
be. Bronze is then compared with Kafka record for record, the gold views with a rebuild
from silver, and the serving views with the same records folded locally."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.testing import assertDataFrameEqual

from retailstream.config import Settings, ViewsSettings
from retailstream.io import datasets
from retailstream.io.delta import read_table
from retailstream.jars import classpath
from retailstream.jobs import build_views, init_world, train_recommender
from retailstream.kafka.broker import free_port
from retailstream.kafka.topics import create_topics
from retailstream.ml import registry
from retailstream.postgres_server import LocalPostgres, reader_dsn
from retailstream.standalone import StandaloneCluster
from retailstream.views.postgres_store import PostgresStore
from retailstream.views.store import open_store
from retailstream.world import DefectRates, EventGenerator, build_world
from support import (
    PROJECT_HOME,
    PYSPARK_MOVIELENS,
    QUICK_JVM,
    assert_bronze_holds_kafka,
    assert_same_views,
    mlflow_runs,
    mlflow_server,
    own_pipeline,
    produce_generated,
    serve_available,
    with_postgres,
)

SEED = 31
EVENTS = 1000
# What a store's deduplication must withstand, and records that refine quarantines.
DEFECTS = DefectRates(duplicate=0.03, out_of_order=0.03, wrong_type=0.005)
# The submitted jobs' drivers and executors compile with C1 only (QUICK_JVM): on two cores,
# the serving job took 70-90 s so, 120 s and more with C2.
FOLDED_BY = re.compile(
    r"serving: postgres slices folded by (\d+) task processes on \d+ hosts"
    r" \(driver pid (\d+)\): (.*)"
)
# An executor on each worker, both registered before the first batch: tasks then spread
# over the two. (The ratio counts cores of spark.cores.max: without it, none are awaited.)
BOTH_WORKERS = {
    "spark.executor.memory": "768m",
    "spark.cores.max": "2",
    "spark.scheduler.minRegisteredResourcesRatio": "1.0",
    "spark.scheduler.maxRegisteredResourcesWaitingTime": "60s",
}
# One small grid point: the test is about where the job runs, not what it picks.
QUICK_RECOMMENDER = [
    "ml.recommender.ranks=[4]",
    "ml.recommender.reg_params=[0.3]",
    "ml.recommender.max_iter=5",
]


@dataclass(frozen=True)
class ClusterRun:
    """The lake the jobs ran over on the cluster, the ratings file the recommender trained
    on, and what each spark-submit printed."""

    settings: Settings
    ratings_file: Path
    outputs: dict[str, subprocess.CompletedProcess[str]]
    finished_apps: list[str]


def _spark_submit(
    cluster: StandaloneCluster, job: str, overrides: list[str], *flags: str
) -> subprocess.CompletedProcess[str]:
    """`jobs/<job>.py --env cluster --set <override>... <flags>` under spark-submit on
    `cluster`, with the resolved jars. The driver's prints reach spark-submit's stdout
    (Python's stderr too), Spark's logs its stderr."""
    # The session sets spark.executor.extraJavaOptions (`session_conf`) over any --conf
    # of it, so the executors get theirs from the environment.
    conf = {"spark.executorEnv.JAVA_TOOL_OPTIONS": QUICK_JVM, **BOTH_WORKERS}
    command = [
        str(Path(sys.executable).parent / "spark-submit"),
        "--master", cluster.master_url,
        "--jars", ",".join(str(p) for p in classpath(PROJECT_HOME, "spark")),
        "--driver-java-options", f"{QUICK_JVM} -Xss32m",
        *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
        str(PROJECT_HOME / "jobs" / f"{job}.py"),
        "--env", "cluster",
        *(arg for override in overrides for arg in ("--set", override)),
        *flags,
    ]  # fmt: skip
    done = subprocess.run(
        command,
        cwd=PROJECT_HOME,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYSPARK_PYTHON": sys.executable},
        check=False,
    )
    assert done.returncode == 0, f"{job}:\n{done.stdout[-1500:]}\n{done.stderr[-1500:]}"
    return done


@pytest.fixture(scope="module")
def cluster_run(
    tmp_path_factory: pytest.TempPathFactory, spark: SparkSession, postgres_server: LocalPostgres
) -> Iterator[ClusterRun]:
    root = tmp_path_factory.mktemp("cluster")
    (root / "mlflow").mkdir()
    movielens = root / "movielens.txt"
    movielens.write_bytes(PYSPARK_MOVIELENS.read_bytes())
    with own_pipeline(root / "pipeline") as lake_settings, mlflow_server(root / "mlflow") as uri:
        settings = with_postgres(lake_settings, postgres_server, "cluster", stores=("postgres",))
        ml = settings.ml.model_copy(update={"store_dir": root / "models", "tracking_uri": uri})
        settings = settings.model_copy(update={"ml": ml})
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        init_world.write_world(spark, settings, SEED, "small")
        generator = EventGenerator(
            build_world(SEED, "small"), SEED, datetime(2026, 6, 1, 9, tzinfo=UTC), 4.0, DEFECTS
        )
        produce_generated(settings, generator, EVENTS)

        server = postgres_server.settings
        overrides = [
            f"lake.root={settings.lake.root}",
            f"kafka.bootstrap_servers={settings.kafka.bootstrap}",
            "views.stores=[postgres]",
            f"postgres.database={settings.postgres.database}",
            f"postgres.local_server.port={server.port}",
            f"postgres.local_server.data_dir={server.data_dir}",
            f"ml.store_dir={settings.ml.store_dir}",
            f"ml.tracking_uri={uri}",
        ]
        cluster = StandaloneCluster(
            root / "cluster",
            master_port=free_port(),
            master_ui_port=free_port(),
            worker_ui_port=free_port(),
            worker_memory="768m",
            workers=2,
        )
        cluster.start()
        try:
            outputs = {
                job: _spark_submit(cluster, job, overrides, "--available-now")
                for job in ("ingest_events", "refine_events", "build_views", "serving_views")
            }
            outputs["train_recommender"] = _spark_submit(
                cluster, "train_recommender", [*overrides, *QUICK_RECOMMENDER],
                "--ratings", str(movielens),
            )  # fmt: skip
            completed = cluster.master_state()["completedapps"]
            assert isinstance(completed, list)
            finished = [str(app["name"]) for app in completed]
        finally:
            cluster.stop()
        yield ClusterRun(settings, movielens, outputs, finished)


def test_every_job_ran_as_an_application_of_the_cluster(cluster_run: ClusterRun) -> None:
    assert cluster_run.finished_apps.count("retailstream") == len(cluster_run.outputs)


def test_bronze_holds_every_kafka_record_once(cluster_run: ClusterRun, spark: SparkSession) -> None:
    settings = cluster_run.settings
    bronze = read_table(spark, datasets.bronze_table(settings))
    assert_bronze_holds_kafka(spark, bronze, settings.kafka.bootstrap, settings.kafka.topics)


@pytest.mark.parametrize("view", ViewsSettings().views)
def test_a_gold_view_equals_its_rebuild_from_silver(
    cluster_run: ClusterRun, spark: SparkSession, view: str
) -> None:
    streamed = read_table(spark, datasets.gold_table(cluster_run.settings, view))
    assert streamed.count() > 0
    assertDataFrameEqual(build_views.rebuild(spark, cluster_run.settings, view), streamed)


def test_postgres_slices_are_folded_by_the_executors_of_two_workers(
    cluster_run: ClusterRun,
) -> None:
    stdout = cluster_run.outputs["serving_views"].stdout
    folded_by = FOLDED_BY.search(stdout)
    assert folded_by, stdout[-1500:]
    count, driver_pid, listed = folded_by.groups()
    workers = listed.split(", ")
    assert int(count) == len(workers) >= 2, folded_by.group(0)
    assert not any(w.endswith(f":{driver_pid}") for w in workers), folded_by.group(0)


def test_the_serving_views_equal_the_same_records_folded_locally(
    cluster_run: ClusterRun, spark: SparkSession
) -> None:
    settings = cluster_run.settings
    sqlite_views = settings.views.model_copy(update={"stores": ("sqlite",)})
    serve_available(spark, settings.model_copy(update={"views": sqlite_views}))
    assert_same_views(
        PostgresStore(reader_dsn(settings), writer=False), open_store(sqlite_views.store_path)
    )


def test_movielens_trains_on_the_cluster_tracked_on_the_mlflow_server(
    cluster_run: ClusterRun,
) -> None:
    """Public data as found: a `.txt` of `user::item::rating::timestamp` lines whose
    1,501 timestamps are all the same instant, so no split by time can hold out anything.
    Its model becomes the champion of the server's registry."""
    settings = cluster_run.settings
    out = cluster_run.outputs["train_recommender"].stdout
    assert "the ratings are split at random, not by time" in out, out[-1500:]
    assert "ratings at random (seed 7)" in out, out[-1500:]
    (run,) = mlflow_runs(settings, train_recommender.EXPERIMENT)
    params = run.data.params
    assert params["split"] == "random"
    assert sum(int(params[f"rows_{p}"]) for p in ("train", "validation", "holdout")) == 1501
    assert "holdout_rmse" in run.data.metrics and "oracle_rmse" not in run.data.metrics
    client = registry.client(settings.ml)
    inputs = json.loads(Path(client.download_artifacts(run.info.run_id, "inputs.json")).read_text())
    assert inputs["ratings"] == {"file": str(cluster_run.ratings_file)}
    # Kept by the server, not in the local store folder.
    assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert not (settings.ml.store_dir / "artifacts").exists()
    assert registry.champion_version(client, settings.ml.recommender_model) == "1"
