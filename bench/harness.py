"""A small benchmark harness: warm-up, alternating repetitions, summaries, results.

A benchmark script describes the work as `Case`s (one of them the baseline),
lets `run_alternating` time them round by round, then hands the timings to
`publish_results`, which prints a table, writes `bench/results/<name>.json`
and rewrites the benchmark's own section of BENCHMARKS.md, between
`<!-- bench:<name> -->` and `<!-- /bench:<name> -->`. Other sections are left
untouched, so each benchmark can be rerun on its own.

    args = parse_args(__doc__)
    results = run_alternating([baseline, candidate], repetitions=5, warmup=1)
    publish_results("ingest", "Kafka -> bronze", "what against what", results,
                    baseline="bare read", params={...}, quick=args.quick)

Figures that are not events per second (latencies, requests/s) go through
`publish_tables` instead: `Table`s of rows, each row a dict, shown by `Column`s
(`percentiles` gives p50/p95/p99/max of a sample), the same JSON and section.

Every run also draws its figures (`plots.py`) into `bench/results/<name>.png`,
shown under the table, and rewrites the `bench:machine` section with the
machine of that run.

`--quick` runs are smoke tests: their JSON and chart go to `<name>.quick.json`
and `<name>.quick.png` and BENCHMARKS.md is not touched, so a CI run never
replaces real figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from plots import Plot, draw

from retailstream.benchmarks import result_path
from retailstream.config import Settings, load_settings
from retailstream.jars import classpath
from retailstream.javacheck import java_executable
from retailstream.kafka.broker import LocalBroker, throwaway_broker

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_HOME = BENCH_DIR.parent
MARKDOWN = PROJECT_HOME / "BENCHMARKS.md"


# ---------------------------------------------------------------------------
# Describing and timing the work


@dataclass(frozen=True)
class Case:
    """One kind of work to time.

    `run` does the work of one repetition and returns how many events it
    processed; only `run` is timed. `prepare`, untimed, runs before each
    repetition (fresh directories, a new generator...).
    """

    label: str
    run: Callable[[], int]
    prepare: Callable[[], None] = lambda: None


@dataclass
class CaseResult:
    """The timed repetitions of one case (warm-ups left out)."""

    label: str
    seconds: list[float] = field(default_factory=list)
    events: list[int] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        """Events per second of each repetition."""
        return [n / s for n, s in zip(self.events, self.seconds, strict=True)]

    @property
    def median_rate(self) -> float:
        return statistics.median(self.rates)


@dataclass(frozen=True)
class Summary:
    """Median and spread of a handful of repetitions."""

    median: float
    minimum: float
    maximum: float
    q1: float
    q3: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        ordered = sorted(values)
        if len(ordered) >= 2:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            q1 = q3 = ordered[0]
        return cls(statistics.median(ordered), ordered[0], ordered[-1], q1, q3, len(ordered))

    @property
    def relative_spread(self) -> float:
        """(max - min) / median: 0.05 means the repetitions lie within 5% of each other."""
        return (self.maximum - self.minimum) / self.median if self.median else 0.0


def run_alternating(
    cases: Sequence[Case],
    repetitions: int,
    warmup: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, CaseResult]:
    """Time every case `warmup + repetitions` times, interleaving the cases.

    Each round runs every case once; the order rotates from round to round
    (AB, BA, AB...) so that neither case always runs right after the other,
    and slow drifts of the machine (JIT, page cache, a noisy neighbour) touch
    all cases alike. Warm-up rounds are timed and printed but not kept.
    """
    if repetitions < 1:
        raise ValueError("repetitions must be at least 1")
    results = {case.label: CaseResult(case.label) for case in cases}
    for round_no in range(warmup + repetitions):
        shift = round_no % len(cases)
        warming = round_no < warmup
        for case in [*cases[shift:], *cases[:shift]]:
            case.prepare()
            started = time.perf_counter()
            events = case.run()
            seconds = time.perf_counter() - started
            tag = "warm-up" if warming else f"rep {round_no - warmup + 1}/{repetitions}"
            log(
                f"  {tag:>9}  {case.label:<40} {events:>11,} events {seconds:8.2f} s "
                f"{events / seconds:>13,.0f} events/s"
            )
            if not warming:
                results[case.label].seconds.append(seconds)
                results[case.label].events.append(events)
    return results


# ---------------------------------------------------------------------------
# The project's pieces that most benchmarks need

BENCH_ENV = "dev"  # the default, laptop-sized config; every benchmark runs on it


@contextlib.contextmanager
def local_broker(tmp: Path) -> Iterator[LocalBroker]:
    """A throwaway Kafka broker on free ports with its data under `tmp`, always stopped.

    Never the developer's broker on 9092: a benchmark must not add records to it.
    """
    print("starting a throwaway Kafka broker ...", flush=True)
    started = time.monotonic()
    with throwaway_broker(tmp / "kafka", PROJECT_HOME) as broker:
        print(f"  up on {broker.bootstrap} in {time.monotonic() - started:.1f} s", flush=True)
        yield broker


def bench_settings(tmp: Path, bootstrap: str, *overrides: str) -> Settings:
    """Settings of BENCH_ENV with the lake, the driver log and Kafka pointed at `tmp` and `bootstrap`."""
    return load_settings(
        BENCH_ENV,
        [
            f"lake.root={tmp / 'lake'}",
            f"spark.driver_log={tmp / 'spark-driver.log'}",
            f"kafka.bootstrap_servers={bootstrap}",
            *overrides,
        ],
        home=PROJECT_HOME,
    )


@contextlib.contextmanager
def workspace(name: str, *overrides: str) -> Iterator[tuple[Path, Settings]]:
    """A temporary folder, a throwaway broker with its data in it, and settings of both.

    Everything is removed and stopped on the way out, however the benchmark ends.
    """
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp_name:
        tmp = Path(tmp_name)
        with local_broker(tmp) as broker:
            yield tmp, bench_settings(tmp, broker.bootstrap, *overrides)


# ---------------------------------------------------------------------------
# The machine


def _first_match(path: str, pattern: str) -> str | None:
    with contextlib.suppress(OSError):
        match = re.search(pattern, Path(path).read_text(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    return None


def _java_version() -> str | None:
    try:
        done = subprocess.run(
            [str(java_executable()), "-version"], capture_output=True, text=True, timeout=30
        )
    except Exception:
        return None
    # `openjdk version "17.0.15" 2025-04-15` -> `17.0.15`
    match = re.search(r'version "([^"]+)"', done.stderr or done.stdout)
    return match.group(1) if match else None


def _package_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _jar_version(classpath_name: str, artifact: str) -> str | None:
    """The version of `artifact` (a regex: `kafka-clients`, `delta-spark_[\\d.]+_[\\d.]+`)
    among the jars of a resolved classpath."""
    with contextlib.suppress(Exception):
        for jar in classpath(PROJECT_HOME, classpath_name):
            match = re.fullmatch(artifact + r"-(\d[\w.]*)\.jar", jar.name)
            if match:
                return match.group(1)
    return None


def _source_commit() -> str | None:
    """The checked-out commit, read from .git without running git."""
    git = PROJECT_HOME / ".git"
    with contextlib.suppress(OSError):
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        loose = git / ref
        if loose.exists():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    return None


def machine() -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, OS and versions."""
    mem_kb = _first_match("/proc/meminfo", r"^MemTotal:\s+(\d+) kB")
    return {
        "cpu_model": _first_match("/proc/cpuinfo", r"^model name\s*:(.*)$") or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem_kb) / 1024**2, 1) if mem_kb else None,
        "os": platform.platform(),
        "python": platform.python_version(),
        "java": _java_version(),
        "spark": _package_version("pyspark"),
        "delta": _jar_version("spark", r"delta-spark_[\d.]+_[\d.]+")
        or _package_version("delta-spark"),
        "kafka_broker": _jar_version("kafka-broker", "kafka-server"),
        "spark_kafka_client": _jar_version("spark", "kafka-clients"),
        "confluent_kafka": _package_version("confluent-kafka"),
        "retailstream": _package_version("retailstream"),
        "commit": _source_commit(),
        # Other work on the machine skews figures; the 5- and 15-minute averages cover the run.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def describe_machine(info: dict[str, Any]) -> str:
    """One line for a Markdown table's caption."""
    parts = [
        f"{info['cpu_model']}, {info['cores']} cores, {info['memory_gib']} GiB",
        f"Python {info['python']}",
        f"Spark {info['spark']}" if info.get("spark") else "",
        f"Java {info['java']}" if info.get("java") else "",
        f"load average {info['load_average_1_5_15'][1]:.1f} (5 min)",
    ]
    return "; ".join(p for p in parts if p)


def machine_section(info: dict[str, Any], name: str, when: datetime) -> str:
    """The Markdown list describing the machine of the latest full run."""
    rows = [
        ("CPU", f"{info['cpu_model']}, {info['cores']} cores"),
        ("memory", f"{info['memory_gib']} GiB"),
        ("OS", info["os"]),
        ("Python", info["python"]),
        ("Java", info.get("java")),
        ("Spark", info.get("spark")),
        ("Delta", info.get("delta")),
        ("Kafka broker", info.get("kafka_broker")),
        ("Kafka clients", f"Spark {info.get('spark_kafka_client')}, "
         f"confluent-kafka {info.get('confluent_kafka')}"),
        ("retailstream", f"{info.get('retailstream')} (commit {(info.get('commit') or '?')[:10]})"),
        ("load average (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in info["load_average_1_5_15"])),
    ]  # fmt: skip
    lines = [f"The latest full run (`{name}`, {when:%Y-%m-%d %H:%M} UTC) ran on:", ""]
    lines += [f"- {label}: {value}" for label, value in rows if value]
    lines += ["", "Each table's caption gives the machine and load of its own run."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Command line


def parse_args(
    doc: str | None,
    argv: Sequence[str] | None = None,
    add_flags: Callable[[argparse.ArgumentParser], Any] | None = None,
) -> argparse.Namespace:
    """The flags every benchmark takes: --quick, --repetitions, --warmup (and its own:
    `add_flags`)."""
    parser = argparse.ArgumentParser(
        description=(doc or "").split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes, seconds: a smoke test, not figures"
    )
    parser.add_argument("--repetitions", type=int, help="timed rounds (default: the benchmark's)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default: 1)")
    if add_flags is not None:
        add_flags(parser)
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------
# Results: JSON, a Markdown table, the section of BENCHMARKS.md


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def markdown_table(results: dict[str, CaseResult], baseline: str) -> list[str]:
    """Rows per case: median events/s, spread, seconds, repetitions, ratio to the baseline."""
    base = Summary.of(results[baseline].rates).median
    lines = [
        f"| case | median events/s | min – max events/s | spread | median s | reps | vs {baseline} |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, result in results.items():
        rate = Summary.of(result.rates)
        seconds = Summary.of(result.seconds)
        ratio = "baseline" if label == baseline else f"{rate.median / base:.2f}×"
        lines.append(
            f"| {label} | {_rate(rate.median)} | {_rate(rate.minimum)} – {_rate(rate.maximum)} "
            f"| ±{rate.relative_spread / 2:.0%} | {seconds.median:.2f} | {rate.n} | {ratio} |"
        )
    return lines


def paired_ratios(results: dict[str, CaseResult], case: str, baseline: str) -> list[float]:
    """Rate of `case` over the baseline's in the same round, round by round."""
    return [c / b for c, b in zip(results[case].rates, results[baseline].rates, strict=True)]


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as out:
        out.write(text)
    # mkstemp makes the file private (0600); results are for everyone to read.
    os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o644)
    os.replace(tmp, path)


def replace_section(document: str, name: str, body: str) -> str:
    """`document` with the text between the markers of `name` replaced by `body`.

    A document without those markers gets the section appended at its end.
    """
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    section = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(document):
        return pattern.sub(lambda _: section, document, count=1)
    return f"{document.rstrip()}\n\n{section}\n" if document.strip() else section + "\n"


def publish_results(
    name: str,
    title: str,
    description: str,
    results: dict[str, CaseResult],
    baseline: str,
    params: dict[str, Any],
    quick: bool,
    notes: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Print the table, write the JSON and (full runs only) the BENCHMARKS.md section.

    `description` says what is measured against what; `params` the sizes and
    settings of the run; `notes` are Markdown lines printed under the table;
    `extra` is kept in the JSON only (breakdowns, per-run details).
    """
    info = machine()
    when = datetime.now(UTC).replace(microsecond=0)
    table = markdown_table(results, baseline)
    payload = {
        "name": name,
        "title": title,
        "description": description,
        "measured_at": when.isoformat(),
        "mode": "quick" if quick else "full",
        "params": params,
        "machine": info,
        "baseline": baseline,
        "cases": {
            label: {
                "events_per_second": asdict(Summary.of(r.rates)),
                "seconds": asdict(Summary.of(r.seconds)),
                "runs": [
                    {"seconds": s, "events": n} for s, n in zip(r.seconds, r.events, strict=True)
                ],
                "vs_baseline": {
                    "ratio_of_medians": Summary.of(r.rates).median
                    / Summary.of(results[baseline].rates).median,
                    "paired_ratios": paired_ratios(results, label, baseline),
                },
            }
            for label, r in results.items()
        },
        "notes": list(notes),
        **({"extra": extra} if extra else {}),
    }
    _save_and_show(payload, table, when, info, quick)
    return payload


def _save_and_show(
    payload: dict[str, Any],
    table: list[str],
    when: datetime,
    info: dict[str, Any],
    quick: bool,
) -> None:
    """Write the JSON, print the table and notes, and (full runs only) the BENCHMARKS.md
    sections: the benchmark's own and the machine's.

    `payload` holds name, title, description, params and notes; `table` is Markdown
    lines. The chart (`plots.draw`) goes next to the JSON.
    """
    name, params = payload["name"], payload["params"]
    json_path = result_path(PROJECT_HOME, name, quick)
    _write_atomically(json_path, json.dumps(payload, indent=2, default=str) + "\n")

    print()
    print("\n".join(table))
    for line in payload["notes"]:
        print(line)
    chart = draw(payload, result_path(PROJECT_HOME, name, quick, "png"))
    print(f"\nsaved {json_path.relative_to(PROJECT_HOME)}")
    if chart is not None:
        print(f"saved {chart.relative_to(PROJECT_HOME)}")
    if quick:
        print("quick mode: BENCHMARKS.md left as it is")
        return

    sizes = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in params.items())
    body = "\n".join(
        [
            f"### {payload['title']}",
            "",
            payload["description"],
            "",
            *table,
            "",
            *([f"![{name}]({chart.relative_to(PROJECT_HOME)})", ""] if chart else []),
            *[f"{line}" for line in payload["notes"]],
            *([""] if payload["notes"] else []),
            f"<sub>{when:%Y-%m-%d %H:%M} UTC · {sizes} · {describe_machine(info)} · "
            f"`bench/results/{name}.json`</sub>",
        ]
    )
    document = MARKDOWN.read_text() if MARKDOWN.exists() else "# Benchmarks\n"
    document = replace_section(document, name, body)
    document = replace_section(document, "machine", machine_section(info, name, when))
    _write_atomically(MARKDOWN, document)
    print(f"updated {MARKDOWN.name} sections bench:{name} and bench:machine")


# ---------------------------------------------------------------------------
# Latency-shaped results: percentiles and tables of rows


def percentiles(
    values: Sequence[float], points: Sequence[int] = (50, 95, 99)
) -> dict[str, float | None]:
    """`{"p50": ..., "p95": ..., "p99": ..., "max": ...}` of `values` (empty: all None).

    Linear interpolation between the closest ranks ("inclusive"), so that a
    small sample's p99 lies between its two largest values rather than past them.
    """
    ordered = sorted(values)
    if not ordered:
        return {**{f"p{p}": None for p in points}, "max": None}
    if len(ordered) == 1:
        return {**{f"p{p}": ordered[0] for p in points}, "max": ordered[0]}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {**{f"p{p}": cuts[p - 1] for p in points}, "max": ordered[-1]}


@dataclass(frozen=True)
class Column:
    """A column of a `Table`: the row key it shows, its header, and a format spec for numbers."""

    key: str
    header: str
    spec: str = ""  # e.g. ",.0f"; empty: ints with thousands separators, other values as str


@dataclass(frozen=True)
class Table:
    """Rows of figures (dicts) with the columns to show; `caption` is a line above the table."""

    caption: str
    columns: Sequence[Column]
    rows: Sequence[dict[str, Any]]
    plot: Plot | None = None  # how to draw it; None: the table is not charted

    def plot_with_legend(self) -> Plot | None:
        """`plot` naming its bars by the columns' headers."""
        if self.plot is None:
            return None
        headers = {c.key: c.header for c in self.columns}
        return replace(self.plot, legend=tuple(headers.get(k, k) for k in self.plot.values))

    @staticmethod
    def cell(value: Any, spec: str) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "–"
        if spec and isinstance(value, int | float) and not isinstance(value, bool):
            return format(value, spec)
        if isinstance(value, int) and not isinstance(value, bool):
            return f"{value:,}"
        return str(value)

    def markdown(self) -> list[str]:
        lines = [f"{self.caption}", ""] if self.caption else []
        lines.append("| " + " | ".join(c.header for c in self.columns) + " |")
        lines.append(
            "|" + "|".join("---" if i == 0 else "---:" for i in range(len(self.columns))) + "|"
        )
        for row in self.rows:
            cells = (self.cell(row.get(c.key), c.spec) for c in self.columns)
            lines.append("| " + " | ".join(cells) + " |")
        return lines


def publish_tables(
    name: str,
    title: str,
    description: str,
    tables: Sequence[Table],
    params: dict[str, Any],
    quick: bool,
    notes: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`publish_results` for figures that are not events per second (latencies, requests/s).

    Prints the tables, writes `results/<name>.json` (every row with all its keys,
    not only the shown columns) and, in full runs only, the BENCHMARKS.md section:
    the title, `description`, each table under its caption, `notes`, the machine.
    """
    info = machine()
    when = datetime.now(UTC).replace(microsecond=0)
    lines: list[str] = []
    for table in tables:
        lines.extend([*([""] if lines else []), *table.markdown()])
    payload = {
        "name": name,
        "title": title,
        "description": description,
        "measured_at": when.isoformat(),
        "mode": "quick" if quick else "full",
        "params": params,
        "machine": info,
        "tables": [
            {
                "caption": t.caption,
                "rows": list(t.rows),
                **_plot_entry(t),
            }
            for t in tables
        ],
        "notes": list(notes),
        **({"extra": extra} if extra else {}),
    }
    _save_and_show(payload, lines, when, info, quick)
    return payload


def _plot_entry(table: Table) -> dict[str, Any]:
    """`{"plot": ...}` of a charted table for its JSON; nothing for the others."""
    plot = table.plot_with_legend()
    return {"plot": asdict(plot)} if plot is not None else {}


# ---------------------------------------------------------------------------
# Cost against history (bench_fold_history, bench_gold_history)


def history_row(
    label: str, events: int, seconds: Sequence[float], baseline: float, **shape: Any
) -> dict[str, Any]:
    """A row of a batch-cost-against-history table: the batch times in ms and their
    median against `baseline` (seconds), with the stored state's `shape`."""
    middle = statistics.median(seconds)
    return {
        "history": label,
        "events": events,
        "median_ms": middle * 1000,
        "min_ms": min(seconds) * 1000,
        "max_ms": max(seconds) * 1000,
        "vs_empty": middle / baseline,
        **shape,
        "seconds": list(seconds),
    }


def history_table(
    caption: str,
    rows: Sequence[dict[str, Any]],
    ms_spec: str,
    baseline_header: str,
    shape_columns: Sequence[Column],
) -> Table:
    """The table of a cost-against-history benchmark: batch times per history size
    (formatted by `ms_spec`), against the baseline, then the stored state's shape."""
    return Table(
        caption,
        [
            Column("history", "history"),
            Column("median_ms", "median ms", ms_spec),
            Column("min_ms", "min ms", ms_spec),
            Column("max_ms", "max ms", ms_spec),
            Column("vs_empty", baseline_header, ".2f"),
            *shape_columns,
        ],
        rows,
        Plot(("history",), ("median_ms", "max_ms"), "milliseconds per batch"),
    )


def publish_history(
    name: str,
    title: str,
    doc: str,
    table: Table,
    sizes: Sequence[int],
    batch_events: int,
    repetitions: int,
    quick: bool,
    notes: Iterable[str],
    began: float,
) -> None:
    """`publish_tables` for a cost-against-history benchmark (its docstring's second
    paragraph as the description)."""
    publish_tables(
        name,
        title,
        doc.split("\n\n")[1].replace("\n", " "),
        [table],
        params={
            "sizes": "/".join(f"{s:g}" for s in sizes),
            "batch_events": batch_events,
            "repetitions": repetitions,
        },
        quick=quick,
        notes=notes,
        extra={"whole_run_seconds": time.perf_counter() - began},
    )
