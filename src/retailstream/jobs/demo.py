"""Demo: broker -> a few events -> bronze, printing each step.

Reads/writes: starts the local broker when config uses it and it is not
running, creates the declared topics, publishes a few sample events to each,
ingests everything into `<lake>/bronze_events` (available-now) and prints
what bronze holds per topic.
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings, load_settings
from retailstream.io.delta import StreamTrigger, read_table
from retailstream.jobs import ingest_events
from retailstream.jobs.launcher import add_common_flags, guarded
from retailstream.kafka.broker import LocalBroker
from retailstream.kafka.clients import flush_or_fail, producer
from retailstream.kafka.topics import create_topics

# Which field keys each topic (DESIGN.md section 2): per-entity order is kept.
TOPIC_KEYS = {
    "shop.clickstream": "session_id",
    "shop.orders": "order_id",
    "shop.ratings": "sku",
    "logistics.shipments": "shipment_id",
    "logistics.weather": "region",
    "logistics.world_events": "region",
}


def sample_events(topic: str, count: int, rng: random.Random) -> Iterator[dict[str, object]]:
    """A few plausible events of `topic` (the full causal generator is `retailstream produce`)."""
    now = datetime.now(UTC)
    for i in range(count):
        event: dict[str, object] = {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "event_time": (now - timedelta(seconds=count - i)).isoformat(timespec="milliseconds"),
            "schema_version": 1,
        }
        sku = f"SKU-{rng.randrange(1, 200):06d}"
        region = rng.choice(["iberia", "france", "benelux", "dach", "nordics"])
        if topic == "shop.clickstream":
            event |= {"session_id": f"S-{rng.randrange(50):05d}", "sku": sku, "action": "view"}
        elif topic == "shop.orders":
            event |= {"order_id": f"O-{i:07d}", "lines": [{"sku": sku, "quantity": 1}]}
        elif topic == "shop.ratings":
            event |= {
                "sku": sku,
                "customer_id": f"C-{rng.randrange(1000):07d}",
                "stars": rng.randint(1, 5),
            }
        elif topic == "logistics.shipments":
            event |= {"shipment_id": f"SH-{i:07d}", "status": "created"}
        else:
            event |= {"region": region, "severity": rng.randint(0, 5)}
        yield event


def publish_samples(bootstrap: str, topics: Sequence[str], per_topic: int, seed: int) -> int:
    rng = random.Random(seed)
    client = producer(bootstrap)
    sent = 0
    for topic in topics:
        key_field = TOPIC_KEYS.get(topic, "event_id")
        for event in sample_events(topic, per_topic, rng):
            client.produce(
                topic, key=str(event.get(key_field, "")).encode(), value=json.dumps(event).encode()
            )
            sent += 1
    flush_or_fail(client)
    return sent


def run_demo(settings: Settings, per_topic: int, keep_broker: bool) -> int:
    from retailstream.jars import classpath
    from retailstream.session import build_spark

    broker = None
    if settings.kafka.local_broker.enabled and not settings.kafka.bootstrap_servers:
        local = LocalBroker(settings.kafka.local_broker, classpath(settings.home, "kafka-broker"))
        if local.pid() is None:
            seconds = local.start()
            broker = local
            print(f"[1/4] Kafka broker started on {local.bootstrap} in {seconds:.1f}s")
        else:
            print(f"[1/4] Kafka broker already running on {local.bootstrap}")
    else:
        print(f"[1/4] using the Kafka cluster at {settings.kafka.bootstrap}")
    try:
        created = create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        sent = publish_samples(
            settings.kafka.bootstrap, sorted(created), per_topic, seed=int(time.time())
        )
        print(f"[2/4] published {sent} events to {len(created)} topics")
        started = time.monotonic()
        spark: SparkSession = build_spark(settings)
        print(
            f"[3/4] Spark {spark.version} session ready in {time.monotonic() - started:.1f}s; ingesting"
        )
        query = ingest_events.start(spark, settings, StreamTrigger(available_now=True))
        query.awaitTermination()
        bronze_path = settings.lake.table(ingest_events.BRONZE_TABLE)
        counts = read_table(spark, bronze_path).groupBy("topic").agg(F.count("*").alias("records"))
        print(f"[4/4] bronze event store at {bronze_path}:")
        for row in counts.orderBy("topic").collect():
            print(f"        {row['topic']:<26} {row['records']:>8} records")
    finally:
        if broker is not None and not keep_broker:
            broker.stop()
            print(
                "Kafka broker stopped (its data stays under",
                settings.kafka.local_broker.data_dir,
                ")",
            )
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events-per-topic", type=int, default=20, help="sample events per topic")
    parser.add_argument(
        "--keep-broker", action="store_true", help="leave the broker running afterwards"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo", description=__doc__.splitlines()[0])
    add_common_flags(parser)
    add_flags(parser)
    args = parser.parse_args(argv)
    return guarded(
        args.verbose,
        lambda: run_demo(
            load_settings(args.env, args.overrides), args.events_per_topic, args.keep_broker
        ),
    )
