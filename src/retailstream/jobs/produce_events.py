"""Produce: the causal event generator -> the six Kafka topics, with ground truth.

Reads: `<lake>/reference/_world.json` (the world that `world init` wrote).
Writes: events to the topics of DESIGN.md section 2 (keyed per entity), and
the ground truth to `<lake>/ground_truth/<table>/` (Parquet). No Spark.

Event times: live (the wall clock) by default; with `--start` the generator
runs on a simulated clock from that time, `--sim-seconds-per-event` apart,
which fast-forwards days of history for training.

The world carries on between runs (`io.world_state`): a run that stops
cleanly saves it, with its stock as ground truth (`ground_truth/stock`), and
the next run resumes it, its clock moved on to now (or to `--start`).
`--new-world` starts it over from its initial stock.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from retailstream.config import Settings, load_settings
from retailstream.errors import UserError
from retailstream.io import world_state
from retailstream.io.datasets import load_world, world_spec
from retailstream.io.truth import TruthWriter, truth_dir
from retailstream.jobs.launcher import launch_without_spark
from retailstream.kafka.clients import producer, require_broker
from retailstream.kafka.publish import PublishReport, publish
from retailstream.kafka.topics import create_topics
from retailstream.world import DefectRates, EventGenerator


def defect_rates(share: float) -> DefectRates:
    """The generator's default mix of defect kinds, scaled to `share` of all records."""
    default = DefectRates()
    if share == 0:
        return DefectRates.none()
    factor = share / default.total
    return replace(default, **{k: v * factor for k, v in asdict(default).items()})


def parse_duration(text: str) -> float:
    """'90', '90s', '15m', '2h' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise UserError(
            f"--duration {text!r}: expected seconds or a number with s, m or h"
        ) from None


def produce(
    settings: Settings, args: argparse.Namespace, stop: Callable[[], bool] = lambda: False
) -> PublishReport:
    """Publish generated events as `args` says (until `stop()` at the latest)."""
    if (args.events is None) == (args.duration is None):
        raise UserError("say how much to produce: exactly one of --events N or --duration D")
    if args.rate is not None and args.rate <= 0:
        raise UserError("--rate must be positive (omit it to produce as fast as possible)")
    bootstrap = settings.kafka.bootstrap
    require_broker(bootstrap)
    create_topics(bootstrap, settings.kafka.topics)
    spacing = args.sim_seconds_per_event or (1.0 / args.rate if args.rate else 0.001)
    if args.start:
        start = datetime.fromisoformat(args.start).astimezone(UTC)
        clock = None
    else:
        start, clock = datetime.now(UTC), (lambda: datetime.now(UTC))
    root, spec = settings.lake.root, world_spec(settings)
    if getattr(args, "new_world", False):
        world_state.forget(root)
    resumed = world_state.claim(root, spec)
    generator = resumed.generator
    if generator is None:
        generator = EventGenerator(
            load_world(settings),
            seed=args.seed,
            start=start,
            sim_seconds_per_event=spacing,
            defect_rates=defect_rates(settings.generator.defect_share),
            clock=clock,
        )
    else:
        generator.use_clock(clock, spacing)
        generator.skip_to(start)
    print(resumed.note, file=sys.stderr)
    max_seconds = parse_duration(args.duration) if args.duration else None
    total = args.events if args.events is not None else None
    truth = TruthWriter(root)
    with tqdm(total=total, unit="ev", unit_scale=True, file=sys.stderr, disable=args.quiet) as bar:
        try:
            report = publish(
                generator,
                producer(bootstrap),
                truth,
                rate=args.rate,
                max_events=args.events,
                max_seconds=max_seconds,
                batch_size=settings.generator.batch_size,
                on_progress=bar.update,
                stop=stop,
            )
        except KeyboardInterrupt:  # publish flushed everything: the world is as Kafka has it
            _keep_world(root, spec, generator, truth)
            raise
    _keep_world(root, spec, generator, truth)
    print(
        f"published {report.events} events in {report.seconds:.1f}s "
        f"({report.rate:,.0f} events/s) to {bootstrap}"
    )
    for topic, count in sorted(report.per_topic.items()):
        print(f"  {topic:<26} {count:>9}")
    written = ", ".join(f"{t} {n}" for t, n in sorted(report.truth_rows.items()))
    print(f"ground truth ({written or 'none'}) under {truth_dir(settings.lake.root)}")
    return report


def _keep_world(root: Path, spec: dict, generator: EventGenerator, truth: TruthWriter) -> None:
    """Save the world for the next run, and its stock as ground truth."""
    truth.append({"stock": generator.stock()})
    world_state.save(root, spec, generator)


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate", type=float, help="events per second (default: as fast as possible)"
    )
    parser.add_argument("--events", type=int, help="stop after this many events")
    parser.add_argument("--duration", help="stop after this long: seconds, or 30s, 5m, 1h")
    parser.add_argument("--seed", type=int, default=1, help="seed of the event stream (default 1)")
    parser.add_argument(
        "--start", help="simulated start time (ISO 8601); default: live, the wall clock"
    )
    parser.add_argument(
        "--sim-seconds-per-event",
        type=float,
        help="simulated seconds between events (default: 1/rate, live spacing)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--new-world",
        action="store_true",
        help="start the world over from its initial stock instead of resuming the saved one",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return launch_without_spark(__doc__.splitlines()[0], run, argv, add_flags, prog="produce")


def run(args: argparse.Namespace) -> int:
    """Entry for the CLI: `args` carries the common flags and this job's flags."""
    produce(load_settings(args.env, args.overrides), args)
    return 0
