"""`retailstream bench`: run the benchmarks of `bench/`, one after another, each in its own process.

Each `bench/bench_NAME.py` is a script (warm-up, repetitions, its own throwaway
broker and SparkSession) that writes `bench/results/NAME.json`, a chart next
to it and, in full mode, its section of BENCHMARKS.md. A separate process per
benchmark keeps one benchmark's JVM, caches and threads from skewing the
next one's figures. This module only picks the scripts, runs them and checks
that each left figures behind; the measuring is in `bench/harness.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retailstream.errors import UserError

# Cheap and self-contained first: a failure shows up before the long runs.
ORDER = ("generator", "ingest", "peer", "refine", "training", "serving", "startup")


@dataclass(frozen=True)
class BenchRun:
    """How one benchmark run ended: exit code, wall time, and the figures it saved."""

    name: str
    returncode: int
    seconds: float
    figures: int  # measured values in its result file (0: none, or no file)
    result: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.figures > 0


def available(home: Path) -> dict[str, Path]:
    """Benchmark name -> script, in the order `all` runs them (unknown names last, sorted)."""
    scripts = {p.stem.removeprefix("bench_"): p for p in (home / "bench").glob("bench_*.py")}
    known = [n for n in ORDER if n in scripts]
    return {n: scripts[n] for n in [*known, *sorted(set(scripts) - set(known))]}


def select(home: Path, names: Sequence[str]) -> dict[str, Path]:
    """The scripts of `names` (all when empty); an unknown name is a UserError listing the known."""
    scripts = available(home)
    if not scripts:
        raise UserError(f"no benchmarks under {home / 'bench'} (bench_NAME.py)")
    unknown = [n for n in names if n not in scripts]
    if unknown:
        raise UserError(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(scripts)}")
    return {n: scripts[n] for n in names} if names else scripts


def result_path(home: Path, name: str, quick: bool, suffix: str = "json") -> Path:
    """Where a benchmark's result (`json`) or chart (`png`) goes; quick runs apart."""
    return home / "bench" / "results" / (f"{name}.quick.{suffix}" if quick else f"{name}.{suffix}")


def count_figures(payload: dict[str, Any]) -> int:
    """Measured values in a result: cases with a positive median rate, or table rows."""
    if "cases" in payload:
        return sum(
            1 for case in payload["cases"].values() if case["events_per_second"]["median"] > 0
        )
    return sum(len(table["rows"]) for table in payload.get("tables", []))


def figures_since(path: Path, started: float) -> int:
    """Figures in `path` if it was written after `started` (epoch seconds), else 0."""
    if not path.exists() or path.stat().st_mtime < started:
        return 0
    try:
        return count_figures(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return 0


def run_one(
    home: Path,
    name: str,
    script: Path,
    flags: Sequence[str],
    quick: bool,
    python: str = sys.executable,
) -> BenchRun:
    """Run one benchmark script to the end, its output going straight to ours."""
    started_wall = time.time()
    started = time.monotonic()
    done = subprocess.run([python, str(script), *flags], cwd=home, check=False)
    seconds = time.monotonic() - started
    path = result_path(home, name, quick)
    return BenchRun(name, done.returncode, seconds, figures_since(path, started_wall), path)


def run_benchmarks(
    home: Path,
    names: Sequence[str],
    quick: bool = False,
    repetitions: int | None = None,
    warmup: int | None = None,
    log: Callable[[str], None] = print,
) -> list[BenchRun]:
    """Run the benchmarks of `names` (all when empty) in order; a failure does not stop the rest."""
    scripts = select(home, names)
    flags = [
        *(["--quick"] if quick else []),
        *(["--repetitions", str(repetitions)] if repetitions is not None else []),
        *(["--warmup", str(warmup)] if warmup is not None else []),
    ]
    runs = []
    for number, (name, script) in enumerate(scripts.items(), start=1):
        log(f"== bench {name} ({number}/{len(scripts)}{', quick' if quick else ''}) ==")
        runs.append(run_one(home, name, script, flags, quick))
    return runs


def summary(runs: Sequence[BenchRun], home: Path) -> list[str]:
    """One line per run: outcome, wall time, figures and where they are."""
    lines = [f"{'benchmark':12} {'outcome':8} {'seconds':>8} {'figures':>8}  result"]
    for run in runs:
        if run.returncode != 0:
            outcome = f"exit {run.returncode}"
        else:
            outcome = "ok" if run.figures else "no figs"
        where = run.result.relative_to(home) if run.figures else "-"
        lines.append(f"{run.name:12} {outcome:8} {run.seconds:8.1f} {run.figures:8}  {where}")
    return lines
