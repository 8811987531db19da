"""A job as data: its name, help, flags, typed config and `run`.

`retailstream run|train|submit`, the in-session commands (`asof`, `replay`, ...) and
each `jobs/<script>.py` (the spark-submit entry) are built from these, so a job is declared once, in its own module:

    JOB = stream_job("ingest", "Kafka -> bronze ...", "ingest_events", run, "ingest what Kafka holds")

`run(spark, cfg)` takes a typed config and never sees argparse: flags become the
config in `configure`, at the edge.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.io.delta import StreamTrigger

C = TypeVar("C")
Kind = Literal["stream", "train", "command"]


@dataclass(frozen=True)
class StreamRun:
    """What a streaming job runs with: the settings, and whether it drains what its
    source holds now and stops (`--available-now`) or runs until interrupted."""

    settings: Settings
    available_now: bool = False

    def trigger(self, interval: str) -> StreamTrigger:
        """The trigger of a query that runs every `interval` (its stage's own setting)."""
        return StreamTrigger(available_now=self.available_now, processing_time=interval)


def _no_flags(parser: argparse.ArgumentParser) -> None:
    del parser


@dataclass(frozen=True)
class Job(Generic[C]):
    """A job: `retailstream run NAME` (streams), `retailstream train NAME` (models), or
    a command of its own (`asof`, `maintain`, ...: kind "command"); streams and models
    are also `retailstream submit`-ted as `jobs/<script>.py`."""

    name: str
    help: str
    kind: Kind
    # jobs/<script>.py, the file spark-submit runs.
    script: str
    configure: Callable[[Settings, argparse.Namespace], C]
    run: Callable[[SparkSession, C], int | None]
    add_flags: Callable[[argparse.ArgumentParser], None] = _no_flags

    @property
    def submit_name(self) -> str:
        """The name `retailstream submit` knows it by (`train-recommender` for a model)."""
        return self.name if self.kind == "stream" else f"train-{self.name}"

    def run_with(self, spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
        """Run with the config the parsed flags `args` make of `settings`."""
        return int(self.run(spark, self.configure(settings, args)) or 0)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """The spark-submit entry: parse flags, load config, build the session, run."""
        from retailstream.jobs.launcher import launch

        return launch(self.help, self.run_with, argv, self.add_flags, prog=self.script)


def stream_job(
    name: str, help_: str, script: str, run: Callable[[SparkSession, StreamRun], int | None],
    drains: str,
) -> Job[StreamRun]:  # fmt: skip
    """A streaming job whose only flag is `--available-now` (`drains` says what it drains)."""

    def add_flags(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--available-now",
            action="store_true",
            help=f"{drains} now, then stop (default: run until interrupted)",
        )

    def configure(settings: Settings, args: argparse.Namespace) -> StreamRun:
        return StreamRun(settings, available_now=args.available_now)

    return Job(name, help_, "stream", script, configure, run, add_flags)
