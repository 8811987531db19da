"""The ingest job, unchanged, under spark-submit against a Spark standalone cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from retailstream.config import Settings
from retailstream.jars import classpath
from retailstream.kafka.broker import LocalBroker, free_port
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics, describe_topics
from retailstream.standalone import StandaloneCluster
from support import PROJECT_HOME, assert_bronze_holds_kafka


def test_ingest_job_runs_on_a_standalone_cluster(
    settings: Settings, kafka_broker: LocalBroker, tmp_path: Path, spark
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

    cluster = StandaloneCluster(
        tmp_path / "cluster",
        master_port=free_port(),
        master_ui_port=free_port(),
        worker_ui_port=free_port(),
    )
    cluster.start()
    lake = tmp_path / "lake"
    try:
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "spark-submit"),
                "--master",
                cluster.master_url,
                "--jars",
                ",".join(str(p) for p in classpath(PROJECT_HOME, "spark")),
                "--conf",
                "spark.executor.memory=768m",
                str(PROJECT_HOME / "jobs" / "ingest_events.py"),
                "--env",
                "cluster",
                "--set",
                f"lake.root={lake}",
                "--set",
                f"kafka.bootstrap_servers={kafka_broker.bootstrap}",
                "--available-now",
            ],  # fmt: skip
            cwd=PROJECT_HOME,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "PYSPARK_PYTHON": sys.executable},
            check=False,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        state = cluster.master_state()
        finished = [app["name"] for app in state["completedapps"]]  # type: ignore[index]
        assert "retailstream" in finished, "the job must have run on the cluster's executors"
    finally:
        cluster.stop()

    bronze = spark.read.format("delta").load(str(lake / "bronze_events"))
    assert bronze.count() == in_kafka
    assert_bronze_holds_kafka(spark, bronze, kafka_broker.bootstrap, settings.kafka.topics)
