"""Replay the event store into something that did not exist when the events arrived.

- `--view NAME`: a gold view with no table yet (a definition added since) is built
  from the silver the gold query has read so far, then brought up to date by that
  query, which carries it on with the other views (`build_views.seed_new_views`);
- `--to-prefix PREFIX`: a replica of the chosen topics in Kafka, `PREFIX<topic>`,
  with the same partitions, keys, values and Kafka timestamps, in offset order per
  partition: a copy to test or debug against;
- `--to-table PATH`: the chosen records as a new Delta table in the event store's
  own layout (for a sandbox lake, or to hand a slice to someone).

`--topic` (repeatable) and `--from`/`--until` (Kafka timestamps) choose the
records for the topic and table targets.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings, TopicSettings
from retailstream.errors import UserError
from retailstream.io import datasets
from retailstream.io.datasets import bronze_table
from retailstream.io.delta import StreamTrigger, has_commits, read_table
from retailstream.jobs import build_views
from retailstream.jobs.launcher import iso_time
from retailstream.jobs.spec import Job
from retailstream.kafka.clients import flush_or_fail, producer, require_broker
from retailstream.kafka.topics import create_topics, list_topics
from retailstream.transforms.bronze import BRONZE_PARTITIONS


def chosen_records(
    spark: SparkSession,
    settings: Settings,
    topics: Sequence[str] = (),
    since: datetime | None = None,
    until: datetime | None = None,
) -> DataFrame:
    """The event store's records of `topics` (all when empty) published in [since, until)."""
    path = bronze_table(settings)
    if not has_commits(path):
        raise UserError(f"no event store at {path}: nothing to replay")
    records = read_table(spark, path)
    if topics:
        records = records.where(F.col("topic").isin(list(topics)))
    if since is not None:
        records = records.where(F.col("kafka_timestamp") >= F.lit(since).cast("timestamp"))
    if until is not None:
        records = records.where(F.col("kafka_timestamp") < F.lit(until).cast("timestamp"))
    return records


def to_topics(records: DataFrame, bootstrap: str, prefix: str) -> dict[str, int]:
    """Produce `records` into `prefix<topic>` (created with the source's partition count),
    each to its source partition in offset order, keeping its Kafka timestamp."""
    if not prefix:
        raise UserError("--to-prefix must not be empty: the replica would write to the sources")
    require_broker(bootstrap)
    layout = {
        r["topic"]: r["partitions"]
        for r in records.groupBy("topic")
        .agg((F.max("partition") + 1).alias("partitions"))
        .collect()
    }
    taken = set(list_topics(bootstrap)) & {prefix + t for t in layout}
    if taken:
        raise UserError(f"{', '.join(sorted(taken))} exist already: replay into new topics")
    create_topics(bootstrap, {prefix + t: TopicSettings(partitions=n) for t, n in layout.items()})
    client = producer(bootstrap)
    produced: dict[str, int] = {}
    ordered = records.orderBy("topic", "partition", "offset").select(
        "topic", "partition", "key", "value", F.unix_millis("kafka_timestamp").alias("millis")
    )
    for row in ordered.toLocalIterator():
        target = prefix + row["topic"]
        kwargs = {} if row["millis"] is None else {"timestamp": row["millis"]}
        while True:
            try:
                client.produce(target, key=row["key"], value=row["value"],
                               partition=row["partition"], **kwargs)  # fmt: skip
                break
            except BufferError:  # the local queue is full: let it drain
                client.poll(0.05)
        produced[target] = produced.get(target, 0) + 1
    flush_or_fail(client)
    return produced


def to_table(records: DataFrame, path: Path) -> int:
    """Write `records` as a new Delta table at `path` in the event store's layout."""
    if has_commits(path):
        raise UserError(f"{path} holds a Delta table already: replay into a new one")
    records.write.format("delta").partitionBy(*BRONZE_PARTITIONS).save(str(path))
    return read_table(records.sparkSession, path).count()


def to_new_view(spark: SparkSession, settings: Settings, name: str) -> int:
    """Build view `name`, which has no table, from the stored events; the gold query
    then carries it on with the others."""
    if has_commits(datasets.gold_table(settings, name)):
        raise UserError(
            f"{name} exists already: `retailstream views rebuild-gold {name}` recomputes it instead"
        )
    build_views.start(spark, settings, StreamTrigger(available_now=True)).awaitTermination()
    return read_table(spark, datasets.gold_table(settings, name)).count()


@dataclass(frozen=True)
class ReplayRun:
    """What `replay` runs with: the settings, where to replay to (exactly one of a new
    view, a topic prefix, a table path) and, for a topic or table, which records: of
    `topics` (empty: all) with a Kafka timestamp in [since, until)."""

    settings: Settings
    view: str | None = None
    to_prefix: str | None = None
    to_table: str | None = None  # as given (printed so); resolved when written
    topics: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


def run(spark: SparkSession, cfg: ReplayRun) -> int:
    settings = cfg.settings
    targets = [t for t in (cfg.view, cfg.to_prefix, cfg.to_table) if t is not None]
    if len(targets) != 1:
        raise UserError("say where to replay: exactly one of --view, --to-prefix, --to-table")
    if cfg.view is not None:
        if cfg.topics or cfg.since or cfg.until:
            raise UserError("--view replays every stored event: no --topic, --from or --until")
        rows = to_new_view(spark, settings, cfg.view)
        print(f"replayed the event store into the new view {cfg.view}: {rows:,} rows; "
              f"`retailstream run views` carries it on from here")  # fmt: skip
        return 0
    records = chosen_records(spark, settings, cfg.topics, cfg.since, cfg.until)
    if cfg.to_prefix is not None:
        produced = to_topics(records, settings.kafka.bootstrap, cfg.to_prefix)
        for topic, count in sorted(produced.items()):
            print(f"replayed {count:,} records into {topic}")
        if not produced:
            print("no records matched: nothing replayed")
    elif cfg.to_table is not None:  # the one target left
        count = to_table(records, Path(cfg.to_table).resolve())
        print(f"replayed {count:,} records into {cfg.to_table}")
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--view", help="build this new gold view from the stored events")
    parser.add_argument("--to-prefix", help="replicate the records into Kafka topics PREFIX<topic>")
    parser.add_argument("--to-table", help="write the records to a new Delta table at this path")
    parser.add_argument("--topic", action="append", default=[], help="only this topic (repeatable)")
    parser.add_argument("--from", dest="since", type=iso_time, help="Kafka timestamp, inclusive")
    parser.add_argument("--until", type=iso_time, help="Kafka timestamp, exclusive")


def configure(settings: Settings, args: argparse.Namespace) -> ReplayRun:
    return ReplayRun(
        settings, view=args.view, to_prefix=args.to_prefix, to_table=args.to_table,
        topics=tuple(args.topic), since=args.since, until=args.until,
    )  # fmt: skip


JOB = Job(
    "replay",
    "the event store (or a slice) into a new view, a replica topic or a new table",
    "command", "replay_events", configure, run, add_flags,
)  # fmt: skip
main = JOB.main
