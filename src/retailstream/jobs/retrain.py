"""Retrain on a schedule, in-process: every INTERVAL, train each chosen model once more.

Each round runs the same training as `retailstream train MODEL` in this
process's SparkSession, so each new version is judged against the champion on
its holdout and only a better one is promoted. A round that fails (a table
missing, too few rows, an MLflow error) is reported and changes nothing: the
champion keeps serving, and the next round tries again.

From cron instead (one process per run), e.g. every night at 02:00:
    0 2 * * *  cd /srv/retailstream && .venv/bin/retailstream train recommender
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.jobs import train_disruption, train_recommender
from retailstream.jobs.spec import Job

# A model's training as `retailstream train MODEL` runs it without flags.
Trainer = Callable[[SparkSession, Settings], int]
TRAINERS: dict[str, Trainer] = {
    "recommender": lambda spark, settings: train_recommender.run(
        spark, train_recommender.RecommenderRun(settings)
    ),
    "disruption": lambda spark, settings: train_disruption.run(
        spark, train_disruption.DisruptionRun(settings)
    ),
}
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def interval_seconds(text: str) -> float:
    """`90s`, `15m`, `6h`, `1d` (or plain seconds) as seconds (pure)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"not an interval: {text!r} (examples: 90s, 15m, 6h, 1d)")
    return float(match.group(1)) * UNITS[match.group(2) or "s"]


def one_round(
    spark: SparkSession, settings: Settings, models: Sequence[str], trainers: dict[str, Trainer]
) -> dict[str, str]:
    """Train each model once; {model: "ok" | the failure} (a failure stops nothing else)."""
    outcome = {}
    for model in models:
        try:
            trainers[model](spark, settings)
            outcome[model] = "ok"
        except Exception as error:  # noqa: BLE001 - any failure leaves the champion as it was
            first = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            outcome[model] = f"failed: {first}"
            print(f"retraining {model} failed, its champion is unchanged: {first}", flush=True)
    return outcome


@dataclass(frozen=True)
class RetrainRun:
    """What `retrain` runs with: the settings, the seconds between rounds, the models
    each round trains (by their `retailstream train` names), and how many rounds
    (None: until interrupted)."""

    settings: Settings
    every: float
    models: tuple[str, ...] = tuple(sorted(TRAINERS))
    times: int | None = None


def run(spark: SparkSession, cfg: RetrainRun) -> int:
    settings, models = cfg.settings, cfg.models
    unknown = [m for m in models if m not in TRAINERS]
    if unknown:
        raise UserError(f"unknown model {', '.join(unknown)}; models: {', '.join(TRAINERS)}")
    rounds = 0
    failed = 0
    while cfg.times is None or rounds < cfg.times:
        started = time.monotonic()
        print(f"retraining round {rounds + 1}: {', '.join(models)}", flush=True)
        outcome = one_round(spark, settings, models, TRAINERS)
        failed += sum(1 for v in outcome.values() if v != "ok")
        rounds += 1
        if cfg.times is not None and rounds >= cfg.times:
            break
        time.sleep(max(0.0, cfg.every - (time.monotonic() - started)))
    print(f"{rounds} round(s), {failed} failed training(s)")
    return 0 if not failed else 5


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--every", required=True, help="interval between rounds: 90s, 15m, 6h, 1d")
    parser.add_argument("--models", help="comma-separated (default: recommender,disruption)")
    parser.add_argument("--times", type=int, help="stop after this many rounds (default: never)")


def configure(settings: Settings, args: argparse.Namespace) -> RetrainRun:
    """The flags as a `RetrainRun`: `--every` in seconds, `--models` split (default: all)."""
    every = interval_seconds(args.every)
    if args.models:
        return RetrainRun(settings, every, tuple(args.models.split(",")), args.times)
    return RetrainRun(settings, every, times=args.times)


JOB = Job(
    "retrain", "retrain on a schedule (each round judged against the champion)", "command",
    "retrain", configure, run, add_flags,
)  # fmt: skip
main = JOB.main
