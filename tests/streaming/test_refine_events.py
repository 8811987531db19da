"""Defect corpus: generated and hand-made bad events land where they should, with reasons.

One dedicated broker and lake: the generator's events (with five times the
default defects) plus a hand-made corpus go through ingest and refine; every
valid event must be in silver exactly once, every bad one in the quarantine
with its reason, and the quality metrics must account for every row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.io import datasets
from retailstream.io.delta import read_table
from retailstream.jobs import ingest_events, init_world, refine_events
from retailstream.jobs.spec import StreamRun
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics
from retailstream.world import DefectRates, EventGenerator, build_world
from support import own_pipeline

START = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
SEED = 3


@pytest.fixture(scope="module")
def corpus_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with own_pipeline(tmp_path_factory.mktemp("refine")) as settings:
        yield settings


def _rating(event_id: str, when: datetime, **fields: object) -> dict[str, object]:
    event: dict[str, object] = {
        "event_id": event_id,
        "event_type": "item_rated",
        "schema_version": 1,
        "event_time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "customer_id": "C-0000001",
        "sku": "SKU-000001",
        "stars": 4,
    }
    event.update(fields)
    return {k: v for k, v in event.items() if v is not ...}  # ... drops a field


def _hand_made(end: datetime) -> dict[str, tuple[bytes, str | None]]:
    """name -> (value, the reason it must be quarantined for; None = valid)."""
    at = end - timedelta(minutes=5)
    enc = lambda event: json.dumps(event).encode()  # noqa: E731
    return {
        "invalid_json": (b'{"event_id": "x",, "stars": 3}', "invalid_json"),
        "truncated": (enc(_rating("1" * 32, at))[:40], "invalid_json"),
        "non_utf8": (b'{"event_id": "\xff\xfe"}', "not_utf8"),
        "empty": (b"", "empty_value"),
        "wrong_type": (enc(_rating("2" * 32, at, stars="five")), "stars: not int"),
        "null_field": (enc(_rating("3" * 32, at, stars=None)), "stars_not_null"),
        "out_of_range": (enc(_rating("4" * 32, at, stars=7)), "stars_between_1_5"),
        "unknown_sku": (enc(_rating("5" * 32, at, sku="SKU-999999")), "sku_in_products"),
        "future": (
            enc(_rating("6" * 32, end + timedelta(hours=2))),
            "event_lag_seconds_between_-300_3600",
        ),
        "extra_fields": (enc(_rating("7" * 32, at, review="great fit")), None),
        "version_2": (
            enc({**_rating("8" * 32, at, stars=...), "schema_version": 2, "rating": 5}),
            None,
        ),
        "duplicate": (enc(_rating("9" * 32, at)), None),
    }


# Refine reads a number sent as a JSON string ("quantity": "3") as that number: the
# value is kept exactly, so it is not quarantined although the generator calls it a
# wrong type.
COERCED = "line quantity as a string"


def _kind(defect: dict) -> str:
    return "coerced" if defect["detail"] == COERCED else str(defect["kind"])


def _publish_generated(
    settings: Settings,
) -> tuple[dict[str, set[str]], list[tuple[str, bytes, str]], int, datetime]:
    """Produce generated events; return the clean event ids per topic, each defective
    record's (topic, value, defect kind), the count and the simulated end."""
    rates = DefectRates(**{k: 5 * v for k, v in asdict(DefectRates()).items()})
    generator = EventGenerator(build_world(SEED, "small"), SEED, START, 1.0, rates)
    client = producer(settings.kafka.bootstrap)
    clean: dict[str, set[str]] = {}
    defects: list[tuple[str, bytes, str]] = []
    produced = 0
    for _ in range(3):
        batch = generator.next_batch(3000)
        kinds = {row["record_seq"]: _kind(row) for row in batch.defects}
        for index, (record, emitted) in enumerate(
            zip(batch.records, batch.emit_times_ms, strict=True)
        ):
            client.produce(record.topic, key=record.key, value=record.value, timestamp=emitted)
            kind = kinds.get(batch.first_seq + index)
            if kind is not None:
                defects.append((record.topic, record.value or b"", kind))
            if kind is None or kind in {"out_of_order", "duplicate", "coerced"}:
                clean.setdefault(record.topic, set()).add(json.loads(record.value)["event_id"])
        produced += len(batch.records)
    flush_or_fail(client)
    return clean, defects, produced, generator.sim_time


def test_every_event_lands_once_where_it_should(
    corpus_settings: Settings, spark: SparkSession
) -> None:
    settings = corpus_settings
    lake = settings.lake.root
    create_topics(settings.kafka.bootstrap, settings.kafka.topics)
    init_world.write_world(spark, settings, SEED, "small")
    clean, defects, produced, end = _publish_generated(settings)

    corpus = _hand_made(end)
    client = producer(settings.kafka.bootstrap)
    stamp = int(end.timestamp() * 1000)
    for name, (value, _) in corpus.items():
        client.produce("shop.ratings", key=name.encode(), value=value, timestamp=stamp)
    client.produce("shop.ratings", key=b"duplicate", value=corpus["duplicate"][0], timestamp=stamp)
    flush_or_fail(client)

    ingest_events.run(spark, StreamRun(settings, available_now=True))
    refine_events.run(spark, StreamRun(settings, available_now=True))

    silver = {
        t: read_table(spark, datasets.silver_table(settings, t)) for t in settings.refine.tables
    }
    quarantine = read_table(spark, lake / "quarantine")
    for table, frame in silver.items():
        ids = [r.event_id for r in frame.select("event_id").collect()]
        assert len(ids) == len(set(ids)), f"{table}: an event written twice"
        topic = frame.select("topic").first()
        if topic is not None:
            assert clean[topic.topic] <= set(ids), f"{table}: a clean event is missing"

    by_key = {
        bytes(r.key).decode(): list(r.reasons)
        for r in quarantine.where("topic = 'shop.ratings'").select("key", "reasons").collect()
        if r.key is not None and not bytes(r.key).startswith(b"SKU-")
    }
    ratings = silver["ratings"]
    for name, (_, reason) in corpus.items():
        if reason is None:
            assert name not in by_key, (name, by_key.get(name))
        else:
            assert reason in by_key[name], (name, by_key.get(name))
    v2 = ratings.where(F.col("event_id") == "8" * 32).first()
    assert v2 is not None
    assert (v2.stars, v2.schema_version) == (5, 2)
    rescued = ratings.where(F.col("event_id") == "7" * 32).first()
    assert rescued is not None
    assert json.loads(rescued._rescued) == {"review": "great fit"}

    # Every record the generator made malformed is in the quarantine, raw, under its topic.
    malformed = {"invalid_json", "truncated", "non_utf8", "empty", "wrong_type", "missing_field"}
    broken = {(topic, value) for topic, value, kind in defects if kind in malformed}
    assert broken, "the generator made malformed records"
    held = {
        (r.topic, bytes(r.value) if r.value is not None else b"")
        for r in quarantine.select("topic", "value").collect()
    }
    lost = [
        (t, kind, v[:160]) for t, v, kind in defects if kind in malformed and (t, v) not in held
    ]
    assert not lost, f"{len(lost)} malformed records not in the quarantine: {lost[:6]}"

    metrics = read_table(spark, lake / "quality_metrics").collect()
    bronze_rows = read_table(spark, lake / "bronze_events").count()
    assert bronze_rows == produced + len(corpus) + 1
    assert sum(m.valid for m in metrics) == sum(f.count() for f in silver.values())
    assert sum(m.quarantined for m in metrics) == quarantine.count()
    assert sum(m.rows_in for m in metrics) == bronze_rows
    generated_duplicates = sum(kind == "duplicate" for _, _, kind in defects)
    assert sum(m.duplicates_removed for m in metrics) == generated_duplicates + 1

    # Much later than the watermark: counted as dropped, not written, not silent.
    late = _rating("a" * 32, end - timedelta(hours=3))
    client.produce(
        "shop.ratings",
        key=b"late",
        value=json.dumps(late).encode(),
        timestamp=stamp - 3 * 3600_000 + 60_000,
    )
    flush_or_fail(client)
    ingest_events.run(spark, StreamRun(settings, available_now=True))
    refine_events.run(spark, StreamRun(settings, available_now=True))
    after = read_table(spark, lake / "quality_metrics").collect()
    assert [(m.table, m.late_rows_dropped) for m in after if m.late_rows_dropped] == [
        ("ratings", 1)
    ], "counted against the table of its topic"
    assert ratings.where(F.col("event_id") == "a" * 32).count() == 0


def test_quality_validate_passes_on_refined_silver(
    corpus_settings: Settings, spark: SparkSession, capsys: pytest.CaptureFixture[str]
) -> None:
    """What refine let through meets its suites under Great Expectations too."""
    from retailstream.cli import main

    lake = corpus_settings.lake.root
    code = main(
        [
            "--env", "test",
            "--set", f"lake.root={lake}",
            "--set", f"kafka.bootstrap_servers={corpus_settings.kafka.bootstrap}",
            "quality", "validate", "--max-rows", "2000",
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ratings" in out and "clickstream" in out
    assert list((lake.parent / "quality").rglob("index.html")), "Data Docs were built"
