"""Pipeline health of a real query: what the driver reports, and the lag that
`retailstream status` and the API's `/metrics` compute against Kafka's own offsets."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
from pyspark.sql import SparkSession

from retailstream.config import KafkaSettings, LakeSettings, Settings, TopicSettings
from retailstream.health.progress import Reporter, health_dir, read_reports
from retailstream.health.report import pipeline_health
from retailstream.io.delta import StreamTrigger
from retailstream.jobs import ingest_events
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics, describe_topics
from retailstream.serve.server import start_background
from support import run_cli


def _produce(bootstrap: str, topic: str, count: int) -> tuple[int, int]:
    """`count` records spread over the topic's partitions; the epoch ms before and after."""
    before = int(time.time() * 1000)
    client = producer(bootstrap)
    for i in range(count):
        client.produce(topic, f'{{"n": {i}}}'.encode(), key=str(i).encode())
    flush_or_fail(client)
    return before, int(time.time() * 1000)


def test_status_and_metrics_measure_a_stopped_querys_lag_against_kafka(
    spark: SparkSession, settings: Settings, tmp_path: Path
) -> None:
    topic = f"health.{uuid.uuid4().hex[:8]}"  # a topic of its own on the run's broker
    kafka = settings.kafka.model_copy(update={"topics": {topic: TopicSettings(partitions=2)}})
    local = settings.model_copy(
        update={
            "kafka": KafkaSettings(**kafka.model_dump()),
            "lake": LakeSettings(root=tmp_path / "lake"),
            # No serving store: the ingest query is the only stream.
            "views": settings.views.model_copy(update={"sqlite_path": tmp_path / "views.db"}),
        }
    )
    create_topics(local.kafka.bootstrap, local.kafka.topics)
    _produce(local.kafka.bootstrap, topic, 40)
    query = ingest_events.start(spark, local, StreamTrigger(available_now=True))
    query.awaitTermination()
    reporter = Reporter(spark, local)
    assert reporter.report_once([query]) == 1
    (report,) = read_reports(health_dir(local))
    assert (report.name, report.trigger_ms, report.input_rows) == ("ingest_events", 2000, 40)

    # Records the stopped query has not read: its lag, counted against Kafka's own ends.
    before, after = _produce(local.kafka.bootstrap, topic, 25)
    ends = {
        (topic, part.partition): part.latest
        for info in describe_topics(local.kafka.bootstrap, [topic])
        for part in info.partitions
    }
    read = {(topic, int(p)): o for p, o in report.sources[0].next_offsets[topic].items()}
    stages, error = pipeline_health(local)
    assert error is None
    (ingest,) = stages
    assert {(lag.source, lag.partition): lag.records for lag in ingest.lags} == {
        key: ends[key] - read[key] for key in ends
    }
    assert ingest.lag_records == 25
    now = time.time() * 1000
    # The age of the oldest unread record: one produced between `before` and `after`.
    assert (now - after) / 1000 - 1 <= ingest.lag_seconds <= (now - before) / 1000 + 1

    # The CLI says the same, in one screen that ends with the verdict.
    answer = run_cli(
        "status", "--env", "test",
        "--set", f"lake.root={tmp_path / 'lake'}",
        "--set", f"kafka.bootstrap_servers={local.kafka.bootstrap}",
        "--set", f"views.sqlite_path={tmp_path / 'views.db'}",
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr
    lines = answer.stdout.splitlines()
    assert lines[1].split()[0] == "ingest_events" and "25" in lines[1].split()
    assert lines[-1].startswith("all 1 streams keep up"), lines[-1]

    # And /metrics, in Prometheus' text format.
    server, url = start_background(local, port=0)
    try:
        text = httpx.get(f"{url}/metrics", timeout=30).text
    finally:
        server.stop()
    for (t, partition), records in ((k, ends[k] - read[k]) for k in ends):
        line = f'retailstream_stream_lag_records{{partition="{partition}",source="{t}",stream="ingest_events"}} {float(records)}'
        assert line in text, text
    assert 'retailstream_stream_trigger_interval_seconds{stream="ingest_events"} 2.0' in text
