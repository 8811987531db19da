"""Sample lake: a few simulated days of a generated retailer, through the whole pipeline.

What the notebooks explore when there is no lake yet, and a quick way to get
one to try SQL on. It writes the world, then for each simulated day produces
that day's events into a throwaway Kafka broker and runs the streams over them
once (availableNow), so the event store, silver and gold get a Delta version
per day to travel back to. Records carry their simulated emission time as
Kafka timestamp, as if published on those days; ground truth goes where
`produce` puts it. The broker is removed at the end; bronze keeps every record
with its Kafka coordinates.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.datasets import bronze_table
from retailstream.io.delta import has_commits, latest_version
from retailstream.io.truth import TruthWriter
from retailstream.jobs import build_views, enrich_events, ingest_events, init_world, refine_events
from retailstream.jobs.produce_events import defect_rates
from retailstream.jobs.spec import Job, StreamRun
from retailstream.kafka.broker import throwaway_broker
from retailstream.kafka.clients import producer
from retailstream.kafka.publish import publish
from retailstream.kafka.topics import create_topics
from retailstream.world import EventGenerator, build_world

# Written last: a lake holding it is a finished sample.
MARKER = "_sample.json"


@dataclass(frozen=True)
class SampleSpec:
    days: int = 3
    events_per_day: int = 12_000
    seed: int = 7
    scale: str = "small"
    start: datetime = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def marker_path(settings: Settings) -> Path:
    return settings.lake.root / MARKER


def describe(settings: Settings) -> dict | None:
    """What the sample in this lake was built from (None: the lake is not a sample)."""
    path = marker_path(settings)
    return json.loads(path.read_text()) if path.exists() else None


def build(spark: SparkSession, settings: Settings, spec: SampleSpec) -> dict:
    """Build the sample into `settings.lake.root`, which must not hold an event store yet."""
    if spec.days < 1 or spec.events_per_day < 1000:
        raise UserError("a sample needs at least 1 day and 1,000 events per day")
    bronze = bronze_table(settings)
    if has_commits(bronze):
        raise UserError(
            f"{settings.lake.root} already holds an event store: build the sample into an "
            "empty lake (--set lake.root=PATH)"
        )
    with (
        tempfile.TemporaryDirectory(prefix="retailstream-sample-") as tmp,
        throwaway_broker(Path(tmp) / "kafka", settings.home, heap="384m") as broker,
    ):
        kafka = settings.kafka.model_copy(update={"bootstrap_servers": broker.bootstrap})
        local = settings.model_copy(update={"kafka": kafka})
        create_topics(broker.bootstrap, local.kafka.topics)
        init_world.write_world(spark, local, spec.seed, spec.scale)
        generator = EventGenerator(
            build_world(spec.seed, spec.scale),  # type: ignore[arg-type]
            seed=spec.seed,
            start=spec.start,
            sim_seconds_per_event=timedelta(days=1).total_seconds() / spec.events_per_day,
            defect_rates=defect_rates(local.generator.defect_share),
        )
        client, truth = producer(broker.bootstrap), TruthWriter(local.lake.root)
        day_versions = []
        for day in range(spec.days):
            publish(generator, client, truth, rate=None, max_events=spec.events_per_day,
                    max_seconds=None, batch_size=local.generator.batch_size,
                    simulated_timestamps=True)  # fmt: skip
            # The streams catch up once a day: each table gets a version per day,
            # and the quality metrics a batch per day.
            ingest_events.run(spark, StreamRun(local, available_now=True))
            day_versions.append(latest_version(spark, bronze))
            refine_events.run(spark, StreamRun(local, available_now=True))
            enrich_events.run(spark, StreamRun(local, available_now=True))
            build_views.run(spark, StreamRun(local, available_now=True))
            print(f"day {day + 1}/{spec.days}: {spec.events_per_day:,} events through the pipeline")
    built = {
        **asdict(spec),
        "start": spec.start.isoformat(),
        # The event store's Delta version after each day's ingest: day d is the
        # records between versions day_versions[d-1] (exclusive) and day_versions[d].
        "bronze_version_after_day": day_versions,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    marker_path(settings).write_text(json.dumps(built, indent=2) + "\n")
    return built


@dataclass(frozen=True)
class SampleRun:
    """What `sample-lake` runs with: the settings (whose lake it fills) and the sample
    to build (`--days`, `--events-per-day`, `--seed`)."""

    settings: Settings
    spec: SampleSpec = SampleSpec()


def run(spark: SparkSession, cfg: SampleRun) -> int:
    settings, spec = cfg.settings, cfg.spec
    built = build(spark, settings, spec)
    print(
        f"sample lake in {settings.lake.root}: {spec.days} days x {spec.events_per_day:,} events "
        f"from {built['start'][:10]}; explore it with `retailstream sql --tables` or notebooks/"
    )
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    defaults = SampleSpec()
    parser.add_argument("--days", type=int, default=defaults.days, help="simulated days")
    parser.add_argument(
        "--events-per-day", type=int, default=defaults.events_per_day, help="events per day"
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="world and event seed")


def configure(settings: Settings, args: argparse.Namespace) -> SampleRun:
    spec = SampleSpec(days=args.days, events_per_day=args.events_per_day, seed=args.seed)
    return SampleRun(settings, spec)


JOB = Job(
    "sample-lake",
    "a few simulated days through the whole pipeline into an empty lake, to explore",
    "command", "sample_lake", configure, run, add_flags,
)  # fmt: skip
main = JOB.main
