"""Sustained load: does every stage of the demo topology keep up, rate by rate?

For each background rate (full: 5k, 10k, 20k, 50k events/s, 6 minutes each;
`--quick`: 2k for 90 s), on a fresh broker and lake:

- `retailstream produce --rate R` runs in its own process (background traffic,
  as a shop's producers are: apart from the analytics);
- the demo's `Pipeline` runs its four queries in this process, one SparkSession,
  the configured `spark.master` (the serving path Kafka -> store; ingest Kafka ->
  bronze; refine bronze -> silver; gold silver -> gold views), with the demo's
  loop (query health, refine metrics drained every 2 s);
- every 2 s each stage's lag is sampled:
  - Kafka-fed stages: Kafka's end offsets minus the offsets the stage has
    reached, summed over the partitions of its topics: for ingest, where its last
    finished batch ended (its progress); for the serving path, what the store has
    folded (its views' positions), in real-time mode and micro-batches alike; in
    seconds: how long ago Kafka's end stood where the stage stands now (from the
    samples of Kafka's end, 2 s resolution);
  - Delta-fed stages (refine, gold): the rows of the source commits from the
    version the stage's last finished batch will read next; in seconds: the age
    of the oldest of those commits.

A stage keeps up at a rate when its lag in seconds grows by less than
`KEEPS_UP_S` over the last 3 minutes (least-squares slope times 180 s). The
baseline is the producer: the rate Kafka actually took from it in the same
run. The chart shows each stage's lag (seconds) over time, one panel per rate.

    .venv/bin/python bench/bench_sustained.py [--quick]
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench_serving import Supervisor
from confluent_kafka import TopicPartition
from harness import (
    PROJECT_HOME,
    Column,
    Table,
    bench_settings,
    local_broker,
    parse_args,
    publish_tables,
)
from py4j.protocol import Py4JError
from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings
from retailstream.health.lag import Lag as SourceLag
from retailstream.health.lag import delta_lag
from retailstream.health.progress import source_read
from retailstream.jobs import build_views, ingest_events, init_world, refine_events, serving_views
from retailstream.jobs.demo import Pipeline
from retailstream.kafka.clients import consumer
from retailstream.kafka.topics import create_topics
from retailstream.session import build_spark
from retailstream.views.serving import view_topics
from retailstream.views.store import SqliteStore
from retailstream.world import build_world

SAMPLE_EVERY_S = 2.0
WINDOW_S = 180.0  # the tail over which "keeps up" is judged
KEEPS_UP_S = 10.0  # at most this much more behind over the window
# The serving path's lag is read from the store, not from a query's progress.
SERVING = "serving"
STAGES = {
    SERVING: serving_views.QUERY_NAME,
    "ingest": ingest_events.QUERY_NAME,
    "refine": refine_events.QUERY_NAME,
    "gold": build_views.QUERY_NAME,
}


@dataclass(frozen=True)
class Plan:
    rates: tuple[int, ...]
    seconds: float  # per rate, from the producer's start
    window_s: float


FULL = Plan((5_000, 10_000, 20_000, 50_000), 360.0, WINDOW_S)
QUICK = Plan((2_000,), 90.0, 30.0)


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------
# Where Kafka and the Delta tables stand


class KafkaEnds:
    """Kafka's end offsets, sampled, with when each was seen (for lag in seconds)."""

    def __init__(self, bootstrap: str, partitions: Mapping[str, int]) -> None:
        self.reader = consumer(bootstrap, group_id="bench-sustained")
        self.partitions = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
        self.history: list[tuple[float, dict[tuple[str, int], int]]] = []

    def sample(self, now: float) -> dict[tuple[str, int], int]:
        ends = {
            (tp.topic, tp.partition): self.reader.get_watermark_offsets(tp, timeout=10)[1]
            for tp in self.partitions
        }
        self.history.append((now, ends))
        return ends

    def seconds_behind(self, key: tuple[str, int], position: int, now: float) -> float:
        """How long ago Kafka's end stood at `position` (0 when it stands there now)."""
        for seen, ends in self.history:
            if ends[key] > position:
                return now - seen
        return 0.0

    def close(self) -> None:
        self.reader.close()


@dataclass
class Lag:
    records: int = 0
    seconds: float = 0.0


def _lag_behind(
    reached: Mapping[tuple[str, int], int],
    ends: dict[tuple[str, int], int],
    kafka: KafkaEnds,
    now: float,
) -> Lag:
    lag = Lag()
    for key, position in reached.items():
        lag.records += max(0, ends.get(key, position) - position)
        lag.seconds = max(lag.seconds, kafka.seconds_behind(key, position, now))
    return lag


def store_lag(
    store: SqliteStore,
    views: Sequence[str],
    ends: dict[tuple[str, int], int],
    kafka: KafkaEnds,
    now: float,
) -> Lag | None:
    """The serving path's lag: what the store has folded (the least advanced of the views
    of each topic-partition) against Kafka's end; None before the first fold."""
    reached: dict[tuple[str, int], int] = {}
    for view in views:
        for topic in view_topics(view):
            for partition, offset in store.positions(view, topic).items():
                key = (topic, partition)
                reached[key] = min(reached.get(key, offset + 1), offset + 1)
    return _lag_behind(reached, ends, kafka, now) if reached else None


def stage_lag(
    query: StreamingQuery,
    ends: dict[tuple[str, int], int],
    kafka: KafkaEnds,
    now: float,
    wall: float,
) -> Lag | None:
    """The stage's lag behind its sources, from its last finished batch; None before one."""
    progress = query.lastProgress
    if not progress:
        return None
    lag = Lag()
    for source in progress["sources"]:
        read = source_read(source)
        if read is None:
            continue
        behind: Lag | SourceLag
        if read.kind == "kafka":
            reached = {
                (t, int(p)): o for t, parts in read.next_offsets.items() for p, o in parts.items()
            }
            behind = _lag_behind(reached, ends, kafka, now)
        else:
            behind = delta_lag(Path(str(read.table)), read.next_version, wall)
        lag.records += behind.records
        lag.seconds = max(lag.seconds, behind.seconds)
    return lag


# ---------------------------------------------------------------------------
# One rate


@dataclass
class RateRun:
    rate: int
    samples: list[dict[str, Any]] = field(default_factory=list)
    produced: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None  # the first line of what stopped the run, if anything did
    jvm_alive: bool = True
    work: dict[str, float] = field(default_factory=dict)  # JvmWork's fields, over the run


@dataclass(frozen=True)
class JvmWork:
    """What the driver's JVM has done so far: CPU time, and the classes Spark generated
    and compiled (a cache miss each: a steady stream should compile almost nothing)."""

    cpu_s: float
    compiled: int

    def since(self, before: JvmWork) -> dict[str, float]:
        return {
            "cpu_s": round(self.cpu_s - before.cpu_s, 1),
            "compiled": self.compiled - before.compiled,
        }


def jvm_work(spark: SparkSession) -> JvmWork:
    jvm = spark.sparkContext._jvm  # noqa: SLF001 - the JVM's pid and Spark's codegen metrics
    assert jvm is not None
    # JMX's process CPU time is not reachable over Py4J (a JDK-internal class); /proc is.
    stat = Path(f"/proc/{jvm.java.lang.ProcessHandle.current().pid()}/stat").read_text()
    user, system = stat.rsplit(")", 1)[1].split()[11:13]
    cpu_s = (int(user) + int(system)) / os.sysconf("SC_CLK_TCK")
    compiled = (
        jvm.org.apache.spark.metrics.source.CodegenMetrics.METRIC_COMPILATION_TIME().getCount()
    )
    return JvmWork(cpu_s, compiled)


def jvm_alive(spark: SparkSession) -> bool:
    """Whether the driver's JVM still answers (under memory pressure it can die)."""
    try:
        spark.sparkContext._jsc.sc().isStopped()  # noqa: SLF001 - a cheap Py4J round trip
    except Exception:  # noqa: BLE001 - any failure to answer means it is gone
        return False
    return True


def start_producer(settings: Settings, rate: int, seconds: float, out: Path) -> subprocess.Popen:
    command = [str(Path(sys.executable).parent / "retailstream"), "--env", settings.env]
    for item in (
        f"lake.root={settings.lake.root}",
        f"kafka.bootstrap_servers={settings.kafka.bootstrap}",
    ):
        command += ["--set", item]
    command += ["produce", "--rate", str(rate), "--duration", f"{seconds:.0f}s", "--quiet"]
    return subprocess.Popen(
        command, cwd=PROJECT_HOME, stdout=out.open("w"), stderr=subprocess.STDOUT
    )


def producer_report(log_path: Path) -> dict[str, Any]:
    """`produce`'s closing line: `published N events in S s (R events/s) ...`."""
    text = log_path.read_text()
    match = re.search(r"published (\d+) events in ([\d.]+)s \(([\d,.]+) events/s\)", text)
    if not match:
        raise RuntimeError(f"the producer did not finish: {text[-1500:]}")
    return {
        "events": int(match.group(1)),
        "seconds": float(match.group(2)),
        "rate": float(match.group(3).replace(",", "")),
    }


def run_rate(spark: SparkSession, root: Path, rate: int, plan: Plan) -> RateRun:
    run = RateRun(rate)
    with local_broker(root) as broker:
        settings = bench_settings(root, broker.bootstrap)
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        tables = build_world(settings.world.seed, settings.world.scale).tables()
        init_world.write_spec(settings, settings.world.seed, settings.world.scale, tables)
        pipeline = Pipeline(spark, settings)
        pipeline.prepare(tables)
        produce_log = root / "produce.log"
        producer = start_producer(settings, rate, plan.seconds, produce_log)
        began, began_wall = time.monotonic(), time.time()
        kafka = KafkaEnds(
            settings.kafka.bootstrap, {t: s.partitions for t, s in settings.kafka.topics.items()}
        )
        supervisor: Supervisor | None = None
        work = jvm_work(spark)
        try:
            log(f"{rate:,} events/s: producer started, starting the pipeline ...")
            pipeline.start()
            supervisor = Supervisor(pipeline)
            supervisor.start()
            log(f"  {len(pipeline.queries)} queries after {time.monotonic() - began:.0f} s")
            by_name = {q.name: q for q in pipeline.queries}
            store = SqliteStore(settings.views.store_path)
            for now in _ticks(began, plan.seconds):
                supervisor.check()
                if producer.poll() not in (None, 0):
                    raise RuntimeError(f"the producer failed: {produce_log.read_text()[-1500:]}")
                ends = kafka.sample(now)
                wall = time.time()
                sample: dict[str, Any] = {"t": round(now - began, 1)}
                for stage, name in STAGES.items():
                    if stage == SERVING:
                        lag = store_lag(store, settings.views.views, ends, kafka, now)
                    else:
                        lag = stage_lag(by_name[name], ends, kafka, now, wall)
                    if lag is not None:
                        sample[stage] = {"records": lag.records, "seconds": round(lag.seconds, 1)}
                run.samples.append(sample)
                if len(run.samples) % 15 == 0:
                    log("  " + _describe(sample))
            producer.wait(timeout=120)
            run.produced = producer_report(produce_log)
        except RuntimeError as failed:  # a failed stage does not keep up: reported, not fatal
            run.failure = str(failed).splitlines()[0][:300]
            log(f"  FAILED: {run.failure}")
            run.jvm_alive = jvm_alive(spark)
            if run.jvm_alive:
                for query in pipeline.queries:
                    if query.exception() is not None:
                        log(f"  {query.name}: {str(query.exception())[:6000]}")
        finally:
            if producer.poll() is None:
                producer.send_signal(signal.SIGINT)
                producer.wait(timeout=60)
            if supervisor is not None:
                supervisor.stop()
            if run.jvm_alive:
                try:
                    run.work = jvm_work(spark).since(work)
                    pipeline.stop()
                except (Py4JError, OSError):  # the JVM died under the load (out of heap, so far)
                    run.jvm_alive = False
                    run.failure = run.failure or "the driver's JVM died"
            kafka.close()
        log(f"  stopped after {time.monotonic() - began:.0f} s (began {began_wall:.0f})")
    return run


def _last_errors(driver_log: Path | None, lines: int = 15) -> str:
    if driver_log is None or not Path(driver_log).exists():
        return "  (no driver log)"
    text = Path(driver_log).read_text(errors="replace").splitlines()
    errors = [line for line in text if "Error" in line or "Exception" in line]
    return "\n".join(f"  {line[:300]}" for line in errors[-lines:]) or "  (no errors logged)"


def _ticks(began: float, seconds: float) -> Iterator[float]:
    """Every SAMPLE_EVERY_S from `began` until `seconds` have passed (monotonic times)."""
    tick = began
    while True:
        tick += SAMPLE_EVERY_S
        if tick - began > seconds:
            return
        time.sleep(max(0.0, tick - time.monotonic()))
        yield time.monotonic()


def _describe(sample: Mapping[str, Any]) -> str:
    parts = [f"t={sample['t']:.0f}s"]
    for stage in STAGES:
        if stage in sample:
            parts.append(
                f"{stage} {sample[stage]['records']:,} rec/{sample[stage]['seconds']:.0f}s"
            )
    return " · ".join(parts)


# ---------------------------------------------------------------------------
# Judging and reporting


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two points)."""
    if len(points) < 2:
        return 0.0
    xs, ys = [x for x, _ in points], [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / var if var else 0.0


def judge(run: RateRun, plan: Plan) -> list[dict[str, Any]]:
    """One row per stage: lag at the end, its growth over the window, and the verdict."""
    end = run.samples[-1]["t"] if run.samples else 0.0
    tail = [s for s in run.samples if s["t"] >= end - plan.window_s]
    rows = []
    for stage in STAGES:
        points = [(s["t"], s[stage]["seconds"]) for s in tail if stage in s]
        records = [(s["t"], s[stage]["records"]) for s in tail if stage in s]
        growth = slope(points) * plan.window_s
        # A stage that never finished a batch in the window is infinitely behind, and a
        # run that failed kept nothing up.
        keeps_up = bool(points) and growth < KEEPS_UP_S and run.failure is None
        rows.append(
            {
                "rate": run.rate,
                "stage": stage,
                "produced_rate": run.produced.get("rate"),
                "lag_records": records[-1][1] if records else None,
                "lag_s": points[-1][1] if points else None,
                "max_lag_s": max((y for _, y in points), default=None),
                "growth_s": round(growth, 1) if points else None,
                "records_per_s": round(slope(records), 1) if records else None,
                "keeps_up": "yes" if keeps_up else ("no (run failed)" if run.failure else "no"),
                "failure": run.failure,
            }
        )
    return rows


def main() -> int:
    args = parse_args(
        __doc__,
        add_flags=lambda parser: parser.add_argument(
            "--rates", type=int, nargs="+", help="events/s to run at (default: the plan's)"
        ),
    )
    plan = QUICK if args.quick else FULL
    if args.rates:
        plan = replace(plan, rates=tuple(args.rates))
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    runs: list[RateRun] = []
    with tempfile.TemporaryDirectory(prefix="bench-sustained-") as tmp:
        base = Path(tmp)
        session = bench_settings(base / "session", "127.0.0.1:1")
        spark = build_spark(session)
        try:
            for rate in plan.rates:
                runs.append(run_rate(spark, base / f"rate-{rate}", rate, plan))
                if not runs[-1].jvm_alive:
                    log(f"the driver's JVM died at {rate:,} events/s; its log's last errors:")
                    log(_last_errors(session.spark.driver_log))
                    skipped = [r for r in plan.rates if r > rate]
                    log(f"  not run: {', '.join(f'{r:,}' for r in skipped) or 'none'}")
                    break
        finally:
            if jvm_alive(spark):
                spark.stop()
    rows = [row for run in runs for row in judge(run, plan)]
    # Only rates that ran: a rate never run (after the JVM died) kept nothing up.
    kept = [run.rate for run in runs if all(r["keeps_up"] == "yes" for r in judge(run, plan))]
    highest = max(kept, default=None)
    notes = [
        "Highest rate at which every stage keeps up: "
        + (f"**{highest:,} events/s**." if highest else "**none of the rates tried**.")
        + " Target: 20,000 events/s."
    ]
    for run in runs:
        if run.work:
            notes.append(
                f"At {run.rate:,} events/s the driver's JVM used {run.work['cpu_s']:,.0f} "
                f"CPU-s in {plan.seconds:.0f} s ({run.work['cpu_s'] / plan.seconds:.2f} of "
                f"{os.cpu_count()} cores), and Spark compiled {run.work['compiled']:,} "
                "generated classes."
            )
    not_run = [r for r in plan.rates if r not in {run.rate for run in runs}]
    if not_run:
        notes.append(
            f"Not run: {', '.join(f'{r:,}' for r in not_run)} events/s (the driver's JVM died "
            "at the rate before)."
        )
    publish_tables(
        "sustained",
        "Sustained load (`bench/bench_sustained.py`)",
        __doc__.split("\n\n")[1].replace("\n", " ") if __doc__ else "",
        [
            Table(
                f"Each stage's lag at the end of {plan.seconds / 60:.0f} minutes at a fixed "
                f"rate, and its growth over the last {plan.window_s:.0f} s (keeps up: grows "
                f"< {KEEPS_UP_S:.0f} s); the producer's achieved rate is the baseline",
                [
                    Column("rate", "offered events/s"),
                    Column("produced_rate", "produced events/s", ",.0f"),
                    Column("stage", "stage"),
                    Column("lag_records", "lag records"),
                    Column("lag_s", "lag s", ",.1f"),
                    Column("max_lag_s", f"max lag s (last {plan.window_s:.0f} s)", ",.1f"),
                    Column("growth_s", f"growth s / {plan.window_s:.0f} s", ",.1f"),
                    Column("keeps_up", "keeps up"),
                ],
                rows,
            )
        ],
        {"rates": "/".join(str(r) for r in plan.rates), "seconds_per_rate": plan.seconds},
        args.quick,
        notes,
        extra={
            "series": {
                f"{run.rate:,} events/s": {
                    stage: [[s["t"], s[stage]["seconds"]] for s in run.samples if stage in s]
                    for stage in STAGES
                }
                for run in runs
            },
            "series_unit": "lag behind Kafka, s",
            "samples": {str(run.rate): run.samples for run in runs},
            "produced": {str(run.rate): run.produced for run in runs},
            "jvm_work": {str(run.rate): run.work for run in runs},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
