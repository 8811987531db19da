"""Exactly once, proven: SIGKILL the ingest process mid-stream, restart it, lose and repeat nothing.

Events are produced continuously while the ingest process (a real
`retailstream run ingest`, its Python driver and JVM) is killed with SIGKILL
at random moments and restarted; the broker is also taken away and brought
back once. Afterwards bronze must hold every record Kafka holds, once.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pyspark.sql import SparkSession

from retailstream.config import load_settings
from retailstream.io.delta import read_table
from retailstream.io.truth import TruthWriter
from retailstream.jars import classpath
from retailstream.jobs import ingest_events, verify_store
from retailstream.kafka.broker import LocalBroker
from retailstream.kafka.clients import producer
from retailstream.kafka.publish import publish
from retailstream.kafka.topics import create_topics, describe_topics
from retailstream.world import EventGenerator, build_world
from support import PROJECT_HOME, broker_settings

KILLS = 3


def _start_ingest(overrides: list[str], log: Path) -> subprocess.Popen[bytes]:
    command = [str(Path(sys.executable).parent / "retailstream"), "--env", "test"]
    for item in overrides:
        command += ["--set", item]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, "run", "ingest"],
            cwd=PROJECT_HOME,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the JVM dies with it
        )


def _commits(lake: Path) -> int:
    folder = lake / "_checkpoints" / "ingest_events" / "commits"
    return len([p for p in folder.iterdir() if p.name.isdigit()]) if folder.is_dir() else 0


def _wait_for_progress(lake: Path, process: subprocess.Popen[bytes], log: Path) -> None:
    """Return once the (re)started ingest has committed a new micro-batch."""
    before = _commits(lake)
    deadline = time.monotonic() + 120
    while _commits(lake) <= before:
        assert process.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "ingest made no progress in 120s"
        time.sleep(0.5)


def _kill_hard(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_bronze_holds_every_record_once_after_kills_and_a_broker_outage(
    spark: SparkSession, tmp_path: Path
) -> None:
    broker = LocalBroker(
        broker_settings(tmp_path / "kafka"), classpath(PROJECT_HOME, "kafka-broker")
    )
    broker.start()
    lake = tmp_path / "lake"
    overrides = [
        f"lake.root={lake}",
        f"kafka.bootstrap_servers={broker.bootstrap}",
        "ingest.trigger_interval=1 second",
        "ingest.restart_backoff_s=1",
        f"spark.driver_log={tmp_path / 'driver.log'}",
        "spark.master=local[1]",
    ]
    settings = load_settings("test", overrides, home=PROJECT_HOME)
    create_topics(broker.bootstrap, settings.kafka.topics)
    generator = EventGenerator(
        build_world(11, "small"),
        seed=11,
        start=datetime(2026, 3, 1, tzinfo=UTC),
        sim_seconds_per_event=1.0,
    )
    stop_producing = threading.Event()
    producing = threading.Thread(
        target=publish,
        kwargs=dict(
            generator=generator, client=producer(broker.bootstrap), truth=TruthWriter(lake),
            rate=1500, max_events=None, max_seconds=600, batch_size=500, stop=stop_producing.is_set,
        ),
    )  # fmt: skip
    rng = random.Random(20261128)
    log = tmp_path / "ingest.log"
    ingest = None
    try:
        producing.start()
        ingest = _start_ingest(overrides, log)
        for _ in range(KILLS):
            _wait_for_progress(lake, ingest, log)
            time.sleep(rng.uniform(0, 4))  # somewhere inside the following micro-batches
            _kill_hard(ingest)
            ingest = _start_ingest(overrides, log)
        # The broker goes away under the running ingest and comes back.
        _wait_for_progress(lake, ingest, log)
        broker.stop()
        time.sleep(10)
        broker.start()
        _wait_for_progress(lake, ingest, log)
        stop_producing.set()
        producing.join(timeout=180)
        assert not producing.is_alive()
        time.sleep(5)
        assert ingest.poll() is None, (
            "ingest survives the broker outage: " + log.read_text()[-2000:]
        )
        _kill_hard(ingest)
        ingest = None

        # Whatever is left is drained by one more (in-process) available-now run.
        ingest_events.run(spark, settings, argparse.Namespace(available_now=True))
        in_kafka = {
            (info.name, part.partition): (part.earliest, part.latest)
            for info in describe_topics(broker.bootstrap, sorted(settings.kafka.topics))
            for part in info.partitions
        }
    finally:
        stop_producing.set()
        if ingest is not None and ingest.poll() is None:
            _kill_hard(ingest)
        broker.stop()

    bronze = read_table(spark, lake / "bronze_events")
    per_partition = {
        (r.topic, r.partition): (r.n, r.distinct_offsets, r.low, r.high)
        for r in bronze.groupBy("topic", "partition")
        .agg(
            {"*": "count", "offset": "min"}
        )
        .withColumnRenamed("count(1)", "n")
        .withColumnRenamed("min(offset)", "low")
        .join(
            bronze.groupBy("topic", "partition").agg({"offset": "max"}).withColumnRenamed("max(offset)", "high"),
            ["topic", "partition"],
        )
        .join(
            bronze.select("topic", "partition", "offset").distinct().groupBy("topic", "partition").count()
            .withColumnRenamed("count", "distinct_offsets"),
            ["topic", "partition"],
        )
        .collect()
    }  # fmt: skip
    total = sum(high - low for low, high in in_kafka.values())
    assert total > 50_000, "enough traffic to make the kills land mid-batch"
    for key, (low, high) in in_kafka.items():
        if high == low:
            continue
        n, distinct, first, last = per_partition[key]
        assert (n, distinct, first, last + 1) == (high - low, high - low, low, high), key
    assert log.read_text().count("Traceback") == 0
    # Batches replayed after the kills got the same hashes: every chain holds.
    verdict = verify_store.verify(spark, settings)
    assert verdict.intact and verdict.records == total and verdict.unchained == 0, verdict
