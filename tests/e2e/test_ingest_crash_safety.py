"""Exactly once, proven: SIGKILL the ingest and serving processes mid-stream,
restart them, lose and repeat nothing.

Events (with the generator's defects: duplicates, late and malformed records)
are produced continuously while the ingest process and the serving path (each
a real `retailstream run ...`, its Python driver and JVM; the serving path in
Spark's real-time mode, its facts handed to one folder through a Kafka topic) are killed with
SIGKILL at random moments and restarted; the broker is also taken away and
brought back once. Afterwards bronze must hold every record Kafka holds, once,
and the serving views must equal a rebuild from bronze, row for row, with
every Kafka offset applied.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from retailstream.config import load_settings
from retailstream.io.datasets import checkpoint
from retailstream.io.delta import read_table
from retailstream.io.truth import TruthWriter
from retailstream.jars import classpath
from retailstream.jobs import ingest_events, init_world, serving_views, verify_store
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.broker import LocalBroker
from retailstream.kafka.clients import producer
from retailstream.kafka.publish import publish
from retailstream.kafka.topics import create_topics, describe_topics
from retailstream.views.serving import HANDOVER, view_topics
from retailstream.views.store import SqliteStore
from retailstream.world import EventGenerator, build_world
from support import (
    PROJECT_HOME,
    SERVING_VIEWS,
    assert_same_views,
    broker_settings,
    quick_jvm_env,
)

# Rounds of kills before the broker outage. Each round costs two Spark restarts side by
# side (70-110 s on 2 cores): CI runs one, which with the outage's reconnect already
# restarts both processes mid-stream; RETAILSTREAM_CRASH_ROUNDS=5 soaks longer.
KILLS = int(os.environ.get("RETAILSTREAM_CRASH_ROUNDS", "1"))
# 600 events/s once: the producer's own CPU then slowed both cold starts on 2 cores, and
# the drains, the chain check and the rebuild grew with it (173k records, 465 s in CI).
RATE = 400  # events/s
TIMEOUT_S = 1500


def _start(job: str, overrides: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`retailstream run JOB` in its own process group, appending to `log`."""
    command = [str(Path(sys.executable).parent / "retailstream"), "--env", "test"]
    for item in overrides:
        command += ["--set", item]
    with log.open("ab") as out:
        return subprocess.Popen(
            [*command, "run", job],
            cwd=PROJECT_HOME,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the JVM dies with it
            # C1 only (QUICK_JVM). With it and 300 events/s, both jobs' first commits came
            # 81 s after a start, against 125 s with C2 at 600 events/s.
            env=quick_jvm_env(),
        )


class Job:
    """One restartable `retailstream run JOB` process and its checkpoint's commits."""

    def __init__(self, job: str, checkpoint: Path, overrides: list[str], log: Path) -> None:
        self.job, self.overrides, self.log = job, overrides, log
        self.commits_dir = checkpoint / "commits"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = _start(self.job, self.overrides, self.log)

    def commits(self) -> int:
        """The newest committed batch id, -1 before the first (old commit files are
        cleaned up, so their number stops growing)."""
        folder = self.commits_dir
        ids = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
        return max(ids, default=-1)

    def wait_for_progress(self, producing: Producing) -> None:
        """Return once the (re)started process has committed a new micro-batch (which it
        can only do while `producing` sends new events)."""
        assert self.process is not None
        before = self.commits()
        deadline = time.monotonic() + 180
        while self.commits() <= before:
            producing.check()
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            assert time.monotonic() < deadline, f"{self.job} made no progress in 180s"
            time.sleep(0.5)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _kill_hard(self.process)
        self.process = None


class Producing(threading.Thread):
    """`publish` in a thread that keeps the error it ended with, if any."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(daemon=True)
        self.kwargs = kwargs
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            publish(**self.kwargs)  # type: ignore[arg-type]
        except Exception as exc:  # reported by check(), in the test's thread
            self.error = exc

    def check(self) -> None:
        assert self.error is None, f"the producer stopped: {self.error}"


def _kill_hard(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# Two Spark processes restarted side by side on 2 cores, per round: 70-110 s.
@pytest.mark.timeout(TIMEOUT_S)
def test_bronze_and_the_serving_views_hold_every_record_once_after_kills_and_a_broker_outage(
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
        # Small serving batches: several per kill interval, so that kills land mid-batch.
        "serving.max_offsets_per_trigger=1500",
        f"spark.driver_log={tmp_path / 'driver.log'}",
        "spark.master=local[1]",
    ]
    settings = load_settings("test", overrides, home=PROJECT_HOME)
    create_topics(broker.bootstrap, settings.kafka.topics)
    # The serving path checks events against the reference data of this world.
    init_world.write_world(spark, settings, 11, "small")
    generator = EventGenerator(
        build_world(11, "small"),
        seed=11,
        start=datetime.now(UTC),
        sim_seconds_per_event=1 / RATE,
        # Live: event times follow the wall clock, as the lateness checks expect. On the
        # simulated clock alone, a quiet night runs ~15x ahead of the wall, and within
        # minutes the broker refuses timestamps more than an hour in the future.
        clock=lambda: datetime.now(UTC),
    )
    # Produced until the test says stop (or times out): a 600 s limit once ran out on a slow
    # machine before the kills were done, and the restarted jobs had nothing new to commit.
    stop_producing = threading.Event()
    producing = Producing(
        generator=generator, client=producer(broker.bootstrap), truth=TruthWriter(lake),
        rate=RATE, max_events=None, max_seconds=TIMEOUT_S, batch_size=500, stop=stop_producing.is_set,
    )  # fmt: skip
    rng = random.Random(20261128)
    ingest = Job(
        "ingest", checkpoint(settings, ingest_events.QUERY_NAME), overrides, tmp_path / "ingest.log"
    )
    # The serving path in real-time mode (a task slot per partition), checkpointing
    # every 5 s: kills land between checkpoints, and the restarted query writes facts
    # the folder has folded already.
    realtime = [*overrides, "spark.master=local[16]", "serving.checkpoint_interval=5 seconds"]
    serving = Job(
        "serving",
        checkpoint(settings, serving_views.RT_CHECKPOINT),
        realtime,
        tmp_path / "serving.log",
    )
    try:
        producing.start()
        ingest.start()
        serving.start()
        for _ in range(KILLS):
            # Each somewhere inside its following micro-batches; restarted side by side.
            for job in (ingest, serving):
                job.wait_for_progress(producing)
            for job in (ingest, serving):
                time.sleep(rng.uniform(0, 3))
                job.kill()
            for job in (ingest, serving):
                job.start()
        # The broker goes away under the running jobs and comes back.
        ingest.wait_for_progress(producing)
        serving.wait_for_progress(producing)
        broker.stop()
        time.sleep(10)
        broker.start()
        ingest.wait_for_progress(producing)
        serving.wait_for_progress(producing)
        stop_producing.set()
        producing.join(timeout=180)
        assert not producing.is_alive()
        producing.check()
        time.sleep(5)
        for job in (ingest, serving):
            assert job.process is not None and job.process.poll() is None, (
                f"{job.job} survives the broker outage: " + job.log.read_text()[-2000:]
            )
            job.kill()

        # The real-time path folded records it read while it ran, through the handover
        # topic (the drain below uses micro-batches, which would fold them all otherwise).
        # How many depends on how far it got between kills on a loaded machine: 970 in
        # one CI run with a kill round, several thousand with two.
        handed_over = SqliteStore(settings.views.store_path).positions(
            HANDOVER, settings.serving.facts_topic
        )
        assert handed_over and handed_over[0] > 0, handed_over
        store = SqliteStore(settings.views.store_path)
        before_drain = {
            (v, t): store.positions(v, t) for v in SERVING_VIEWS for t in view_topics(v)
        }

        # Whatever is left is drained by one more (in-process) available-now run of each.
        ingest_events.run(spark, StreamRun(settings, available_now=True))
        # The rest in large batches: the small ones above were for the kills' sake.
        large = settings.serving.model_copy(update={"max_offsets_per_trigger": 100_000})
        serving_views.run(
            spark, StreamRun(settings.model_copy(update={"serving": large}), available_now=True)
        )
        in_kafka = {
            (info.name, part.partition): (part.earliest, part.latest)
            for info in describe_topics(broker.bootstrap, sorted(settings.kafka.topics))
            for part in info.partitions
        }
    finally:
        stop_producing.set()
        ingest.kill()
        serving.kill()
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
    assert total > 30_000, "enough traffic to make the kills land mid-batch"
    for key, (low, high) in in_kafka.items():
        if high == low:
            continue
        n, distinct, first, last = per_partition[key]
        assert (n, distinct, first, last + 1) == (high - low, high - low, low, high), key
    for job in (ingest, serving):
        assert job.log.read_text().count("Traceback") == 0, job.job
    # Batches replayed after the kills got the same hashes: every chain holds.
    verdict = verify_store.verify(spark, settings)
    assert verdict.intact and verdict.records == total and verdict.unchained == 0, verdict

    # The serving views, killed mid-batch KILLS times, have applied every record of
    # their topics, and equal a fold of bronze made afresh.
    live = SqliteStore(settings.views.store_path)
    for view in SERVING_VIEWS:
        for topic in view_topics(view):
            ends = {p: high for (t, p), (_, high) in in_kafka.items() if t == topic and high}
            applied = {p: offset + 1 for p, offset in live.positions(view, topic).items()}
            # Where the drain started from says which path lost a record, if one did.
            assert applied == ends, (view, topic, applied, ends, before_drain[(view, topic)])
    rebuilt = tmp_path / "rebuilt.db"
    serving_views.rebuild(spark, settings, rebuilt)
    assert_same_views(live, SqliteStore(rebuilt))
