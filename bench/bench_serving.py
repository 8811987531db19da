"""Freshness (a rating posted -> visible through the API) and API serving speed, with baselines.

One throwaway local broker, one lake in a temporary folder, `world init`
(small), generated background traffic from `produce` on a thread at a fixed
rate, the demo's `Pipeline` (the serving path Kafka -> serving store, and the
lake path ingest -> refine -> gold, as continuous streaming queries in one
SparkSession, the configured trigger intervals) and the API on a free port
(`serve.server.start_background`).

1. Freshness, per background rate. About once a second a probe POSTs a
   rating of a random known sku by a random known customer
   (`POST /v1/items/{sku}/ratings`; t0 just before the request), then polls
   the plain `GET /v1/items/{sku}` (no consistency token) every 50 ms until
   the answer's `last_ratings` lists the returned event_id: latency =
   t_visible - t0, where t_visible is when the GET that first listed it was
   sent (resolution: the poll interval). Visibility follows Kafka order (a
   later probe is never in an earlier micro-batch), so a polling round stops
   at the oldest probe not yet visible; every tenth round checks all of them
   and counts any seen out of order. A probe whose item got `views.last_ratings`
   newer ratings by the time it is in the view is not in `last_ratings`: when
   the list is full and lacks the probe, the same GET with the probe's
   consistency token (`wait=0`) tells whether the view includes it (its
   position moves a moment after the rows); such probes are counted as
   `displaced`, and the round goes on past them. Probes not visible within a
   bound are counted, never dropped. The first probes after start-up (or a
   rate change) are warm-up: kept in the JSON, left out of the figures. As the
   demo's loop does, a thread checks the queries and drains the refine
   metrics every 2 s; the drains' durations are reported.

   Baseline, the transport floor: a plain Kafka consumer (confluent-kafka,
   the project's consumer settings) assigned to shop.ratings from its end
   notes when each probe's record (partition, offset from the 202 answer)
   arrives: t_consumed - t0, same probes, same t0. Pipeline latency minus
   this is what ingest, refine, the view and the serving store add; it is
   bounded below by the trigger intervals, printed with the figures, and the
   batch durations of the three queries on the probes' path are reported
   from their progress.

2. API serving speed, after the freshness part, with the pipeline, the
   producer and Spark stopped (on 2 cores a running pipeline would decide the
   figures; the store is then read without a writer), the API still up. In a
   separate process (so that the clients do not share the server's
   interpreter lock), N client threads, each with its own keep-alive
   `httpx.Client`, issue `GET /v1/items/{sku}` on random known skus in a
   closed loop for T seconds after a short warm-up; requests/s and latency
   percentiles per level, non-200 answers counted. Baseline, in the same
   process kind and at the same concurrency: the store look-ups the endpoint
   makes (`queries.product` + `queries.item_ratings` on a `SqliteStore` of the
   same file), in-process: what HTTP, FastAPI and uvicorn add. The two
   alternate (store first, then HTTP, then the other way round).

Full run: background rates 100, 1,000 and 10,000 events/s, 5 warm-up + 60 probes each
(after 30 s of settling), 1, 8 and 32 clients for 10 s, 3 rounds. `--quick`:
50 events/s, 1 + 3 probes, 1 and 4 clients for 2 s, 1 round.

    .venv/bin/python bench/bench_serving.py [--quick]

`--repetitions` sets the rounds of part 2; `--warmup` the warm-up probes per rate;
`--rates 100,1000` the background rates.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import random
import secrets
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import TopicPartition
from harness import (
    Column,
    Plot,
    Table,
    parse_args,
    percentiles,
    publish_tables,
    workspace,
)
from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.io.datasets import load_world
from retailstream.jobs import (
    ingest_events,
    produce_events,
    refine_events,
    serving_realtime,
    serving_views,
)
from retailstream.jobs.demo import Pipeline
from retailstream.jobs.init_world import write_world
from retailstream.kafka.clients import consumer
from retailstream.kafka.publish import PublishReport
from retailstream.kafka.topics import create_topics
from retailstream.serve import queries
from retailstream.serve.server import start_background
from retailstream.session import build_spark
from retailstream.views.store import ServingStore, SqliteStore
from retailstream.world.records import TOPIC_RATINGS

SCALE = "small"
ITEM_VIEW = "item_ratings"
PROBE_INTERVAL_S = 1.0
POLL_INTERVAL_S = 0.05
SWEEP_EVERY = 10  # polling rounds between checks of every pending probe
HEALTH_EVERY_S = 2.0  # the demo's loop: check the queries, drain refine metrics
FIRST_VIEW_TIMEOUT_S = 600.0
HTTP = "HTTP API (GET /v1/items/{sku})"
STORE = "store in-process (baseline)"
PIPELINE = "posted → visible in GET /v1/items"
TRANSPORT = "posted → consumed from Kafka (baseline)"
ACKED = "posted → 202 answered (Kafka acked)"
# The serving query a rating passes through, and the lake path's first stages beside it.
# (The serving path's query is named after its mode: in real-time mode a "batch" is
# a checkpoint interval, which its records do not wait for.)
SERVING_STAGE = "serving path (Kafka -> store)"
STAGES = {
    SERVING_STAGE: (serving_views.QUERY_NAME, serving_realtime.QUERY_NAME),
    "ingest (lake path)": (ingest_events.QUERY_NAME,),
    "refine (lake path)": (refine_events.QUERY_NAME,),
}


@dataclass(frozen=True)
class Plan:
    """Sizes of a run: rates and probes of part 1, concurrency and durations of part 2."""

    rates: tuple[float, ...]
    probes: int
    warmup_probes: int
    bound_s: float  # a probe not visible by then is counted as never visible
    settle_s: float  # after the traffic starts or changes rate, before the warm-up probes
    levels: tuple[int, ...]
    load_seconds: float
    load_warmup_s: float
    repetitions: int
    modes: tuple[str, ...]  # the serving query's modes, each measured at every rate


# The serving query's modes (`serving.real_time`): at each rate, each mode in turn, the
# lake path running on throughout, the order alternating from one rate to the next.
REAL_TIME = "real-time"
MICRO = "micro-batch"
MODES = {REAL_TIME: True, MICRO: False}
FULL = Plan((100, 1_000, 10_000), 60, 5, 300.0, 30.0, (1, 8, 32), 10.0, 1.0, 3, (REAL_TIME, MICRO))
QUICK = Plan((50,), 3, 1, 240.0, 0.0, (1, 4), 2.0, 0.5, 1, (REAL_TIME,))


def log(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------
# The running system: background traffic, the pipeline's health, the transport floor


class Traffic:
    """Generated events at a fixed rate, published by `produce` on a thread (as the demo does)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reports: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, rate: float, seed: int) -> None:
        """(Re)start at `rate` events/s; a new seed, so no event_id repeats an earlier one."""
        self.stop()
        self._stop = threading.Event()
        args = argparse.Namespace(
            events=None, duration="8760h", rate=rate, seed=seed, start=None,
            sim_seconds_per_event=None, quiet=True,
        )  # fmt: skip
        stop = self._stop

        def run() -> None:
            try:
                report: PublishReport = produce_events.produce(self.settings, args, stop.is_set)
                self.reports.append(
                    {"rate_asked": rate, "events": report.events, "seconds": report.seconds}
                    | {"rate": report.rate, "per_topic": report.per_topic}
                )
            except BaseException as exc:  # reported by check() on the main thread
                self.error = exc

        self._thread = threading.Thread(target=run, name="bench-traffic", daemon=True)
        self._thread.start()

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the background producer failed: {self.error}") from self.error

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            self._thread = None


class Supervisor:
    """The demo's loop on a thread: every 2 s, raise query failures and drain refine metrics."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.error: BaseException | None = None
        self.drains: list[float] = []  # seconds of each drain (a Delta append per refine batch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-supervisor", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(HEALTH_EVERY_S):
            try:
                self.pipeline.check()
                started = time.perf_counter()
                self.pipeline.drain_metrics()
                self.drains.append(time.perf_counter() - started)
            except BaseException as exc:
                self.error = exc
                return

    def start(self) -> None:
        self._thread.start()

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the pipeline failed: {self.error}") from self.error

    def stop(self, timeout_s: float = 600.0) -> None:
        """Stop after the drain in progress (each one can take long on a busy machine)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout_s)
            if self._thread.is_alive():
                log(f"  the supervisor is still draining metrics after {timeout_s:.0f} s")


class TransportWatch:
    """The baseline: a plain consumer of shop.ratings, from its end, noting when records arrive."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.arrived: dict[tuple[int, int], float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._consumer = consumer(bootstrap, f"bench-serving-{secrets.token_hex(4)}")
        ends = []
        for partition in range(partitions):
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10
            )
            ends.append(TopicPartition(topic, partition, high))
        self._consumer.assign(ends)
        self._thread = threading.Thread(target=self._run, name="bench-transport", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue
            arrived = time.perf_counter()
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None  # a record, not an error
            with self._lock:
                self.arrived[(partition, offset)] = arrived

    def arrival(self, partition: int, offset: int) -> float | None:
        with self._lock:
            return self.arrived.get((partition, offset))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._consumer.close()


# ---------------------------------------------------------------------------
# Part 1: probes


@dataclass
class Probe:
    """One posted rating and when it was seen where."""

    number: int
    warmup: bool
    sku: str
    t0: float  # perf_counter just before the POST
    acked_s: float  # the 202 answer: Kafka has the record
    event_id: str
    partition: int
    offset: int
    token: str
    visible_s: float | None = None  # None: not visible within the bound
    how: str = ""  # "listed" (in last_ratings) or "displaced" (included, pushed out of the list)
    out_of_order: bool = False
    polls: int = 0
    consumed_s: float | None = None  # the transport floor (None: the consumer never saw it)
    view_offset: int | None = None  # not visible: how far item_ratings had read its partition


class Prober:
    """Posts ratings through the API and polls the item's document until each one shows."""

    def __init__(
        self,
        base_url: str,
        api_token: str,
        skus: Sequence[str],
        customers: Sequence[str],
        last_ratings: int,
        health: Callable[[], None],
        view_offset: Callable[[int], int | None],
        seed: int,
    ) -> None:
        self.view_offset = view_offset
        self.client = httpx.Client(base_url=base_url, timeout=30.0)
        self.auth = {"Authorization": f"Bearer {api_token}"}
        self.skus = list(skus)
        self.customers = list(customers)
        self.last_ratings = last_ratings
        self.health = health
        self.rng = random.Random(seed)
        self.gets = 0
        self.get_errors: Counter[int] = Counter()

    def close(self) -> None:
        self.client.close()

    def post(self, number: int, warmup: bool) -> Probe:
        sku = self.rng.choice(self.skus)
        body = {"customer_id": self.rng.choice(self.customers), "stars": self.rng.randint(1, 5)}
        t0 = time.perf_counter()
        answer = self.client.post(f"/v1/items/{sku}/ratings", json=body, headers=self.auth)
        acked = time.perf_counter() - t0
        if answer.status_code != 202:
            raise RuntimeError(f"POST a rating: {answer.status_code} {answer.text[:300]}")
        doc = answer.json()
        return Probe(
            number, warmup, sku, t0, acked, doc["event_id"], int(doc["partition"]),
            int(doc["offset"]), doc["consistency_token"],
        )  # fmt: skip

    def _get(self, sku: str, params: dict[str, Any] | None = None) -> dict[str, Any] | None:
        self.gets += 1
        answer = self.client.get(f"/v1/items/{sku}", params=params)
        if answer.status_code != 200:
            self.get_errors[answer.status_code] += 1
            return None
        return answer.json()

    def seen(self, probe: Probe) -> str:
        """Whether the item's document shows the probe.

        "listed" or "displaced" (visible), "absent" (not in the view yet), or
        "full" (not listed in a full `last_ratings`, and the view's position not
        yet past it: not in the view, or upserted but the position not moved yet).
        """
        doc = self._get(probe.sku)
        if doc is None:
            return "absent"
        listed = [r["event_id"] for r in doc.get("last_ratings") or []]
        if probe.event_id in listed:
            return "listed"
        if len(listed) < self.last_ratings:
            return "absent"
        # A full list without the probe: not in the view yet, or pushed out by newer ratings.
        checked = self._get(probe.sku, {"consistency_token": probe.token, "wait": 0})
        satisfied = bool(checked and (checked.get("consistency") or {}).get("token_satisfied"))
        return "displaced" if satisfied else "full"

    def run(self, count: int, warmup: int, bound_s: float) -> list[Probe]:
        """Post `warmup + count` probes a second apart; poll until each is visible or too late."""
        total = warmup + count
        probes: list[Probe] = []
        pending: list[Probe] = []
        next_post = time.perf_counter()
        round_no = 0
        while len(probes) < total or pending:
            started = time.perf_counter()
            if len(probes) < total and started >= next_post:
                probe = self.post(len(probes) + 1, warmup=len(probes) < warmup)
                probes.append(probe)
                pending.append(probe)
                next_post = max(next_post + PROBE_INTERVAL_S, started)
            sweep = round_no % SWEEP_EVERY == 0
            for probe in list(pending):
                sent = time.perf_counter()
                probe.polls += 1
                how = self.seen(probe)
                if how in ("listed", "displaced"):
                    probe.visible_s, probe.how = sent - probe.t0, how
                    probe.out_of_order = probe is not pending[0]
                    pending.remove(probe)
                    tag = " (warm-up)" if probe.warmup else ""
                    log(f"  probe {probe.number:>3}{tag}: visible after {probe.visible_s:5.2f} s")
                elif sent - probe.t0 > bound_s:
                    pending.remove(probe)
                    probe.view_offset = self.view_offset(probe.partition)
                    log(
                        f"  probe {probe.number:>3}: NOT visible within {bound_s:.0f} s (offset "
                        f"{probe.offset}; {ITEM_VIEW} at {probe.view_offset} in its partition)"
                    )
                elif not sweep and how == "absent":
                    break  # later probes are in the same or a later batch
            self.health()
            round_no += 1
            time.sleep(max(0.0, started + POLL_INTERVAL_S - time.perf_counter()))
        return probes


def stage_batches(
    pipeline: Pipeline, since_wall: float, until_wall: float
) -> dict[str, dict[str, Any]]:
    """Per query on the probes' path: its batches that overlapped the window (from progress).

    The data batches' median and max seconds (triggerExecution), and every
    batch as (start s after the window opened, seconds, input rows).
    """
    by_name = {q.name: q for q in pipeline.queries}
    stages: dict[str, dict[str, Any]] = {}
    for label, names in STAGES.items():
        name = next(n for n in names if n in by_name)
        batches = []
        for p in by_name[name].recentProgress:
            begun = datetime.fromisoformat(p["timestamp"]).timestamp()
            seconds = p["durationMs"].get("triggerExecution", 0) / 1000
            if begun + seconds >= since_wall and begun <= until_wall:
                batches.append((round(begun - since_wall, 3), seconds, int(p["numInputRows"])))
        with_data = [seconds for _, seconds, rows in batches if rows > 0]
        stages[label] = {
            "query": name,
            "data_batches": len(with_data),
            "median_s": statistics.median(with_data) if with_data else None,
            "max_s": max(with_data) if with_data else None,
            "batches": batches,
        }
    return stages


def summarise_probes(rate: float, mode: str, probes: Sequence[Probe]) -> list[dict[str, Any]]:
    """Rows of the freshness table for one rate and serving mode (warm-up probes left
    out, unseen counted)."""
    measured = [p for p in probes if not p.warmup]
    paths: dict[str, list[float | None]] = {
        PIPELINE: [p.visible_s for p in measured],
        TRANSPORT: [p.consumed_s for p in measured],
        ACKED: [p.acked_s for p in measured],
    }
    rows = []
    for path, values in paths.items():
        seen = [v for v in values if v is not None]
        rows.append(
            {
                "rate": rate,
                "mode": mode,
                "path": path,
                "probes": len(measured),
                **percentiles(seen),
                "not_seen": len(values) - len(seen),
                "displaced": (
                    sum(p.how == "displaced" for p in measured) if path == PIPELINE else None
                ),
            }
        )
    return rows


# ---------------------------------------------------------------------------
# Part 2: closed-loop clients, in a separate process


def _open_store(target: str) -> ServingStore:
    """The SQLite file `target`, or PostgreSQL at the connection string `target`."""
    if target.startswith("host="):
        from retailstream.views.postgres_store import PostgresStore

        return PostgresStore(target, writer=False)
    return SqliteStore(Path(target))


def closed_loop(
    kind: str, target: str, skus: list[str], clients: int, seconds: float, warmup_s: float
) -> dict[str, Any]:
    """`clients` threads, each looking items up back to back for `warmup_s + seconds`.

    `kind` HTTP: GET `target`/v1/items/{sku}, one keep-alive client per thread;
    STORE: the endpoint's store look-ups on the store `target` (`_open_store`).
    Only requests sent after the warm-up are kept. Runs in a worker process.
    """
    barrier = threading.Barrier(clients)
    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: list[Counter[int]] = [Counter() for _ in range(clients)]
    store = _open_store(target) if kind == STORE else None

    def store_lookup(sku: str) -> int:
        assert store is not None
        item, _ = queries.item_and_ratings(store, sku)
        return 200 if item is not None else 404

    def worker(i: int) -> None:
        rng = random.Random(i)
        http = httpx.Client(base_url=target, timeout=30.0) if kind == HTTP else None

        def lookup(sku: str) -> int:
            """The answer's status; 0 for a transport error (counted, like any non-200)."""
            if http is None:
                return store_lookup(sku)
            try:
                return http.get(f"/v1/items/{sku}").status_code
            except httpx.HTTPError:
                return 0

        try:
            barrier.wait()
            measure_from = time.perf_counter() + warmup_s
            until = measure_from + seconds
            while (sent := time.perf_counter()) < until:
                status = lookup(rng.choice(skus))
                if sent >= measure_from:
                    latencies[i].append(time.perf_counter() - sent)
                    statuses[i][status] += 1
        finally:
            if http is not None:
                http.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [x for per_thread in latencies for x in per_thread]
    total: Counter[int] = sum(statuses, Counter())
    return {"requests": len(every), "seconds": seconds, "latencies": every, "statuses": total}


def load_rounds(
    pool: ProcessPoolExecutor,
    base_url: str,
    store_path: Path,
    skus: list[str],
    plan: Plan,
    repetitions: int,
) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """Every level × both kinds, `repetitions` times, the order alternating from run to run."""
    runs: dict[tuple[int, str], list[dict[str, Any]]] = {}
    turn = 0
    for rep in range(repetitions):
        for clients in plan.levels:
            order = (STORE, HTTP) if turn % 2 == 0 else (HTTP, STORE)
            turn += 1
            for kind in order:
                target = base_url if kind == HTTP else str(store_path)
                run = pool.submit(
                    closed_loop, kind, target, skus, clients, plan.load_seconds, plan.load_warmup_s
                ).result()
                runs.setdefault((clients, kind), []).append(run)
                non_200 = sum(n for s, n in run["statuses"].items() if s != 200)
                ms = percentiles(run["latencies"])
                log(
                    f"  rep {rep + 1}/{repetitions}  {clients:>3} clients  {kind:<34} "
                    f"{run['requests'] / run['seconds']:>9,.0f} req/s  "
                    f"p50 {1000 * (ms['p50'] or 0):6.2f} ms  p99 {1000 * (ms['p99'] or 0):7.2f} ms"
                    f"  non-200 {non_200}"
                )
    return runs


def summarise_load(runs: dict[tuple[int, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for (clients, kind), reps in runs.items():
        rates = [r["requests"] / r["seconds"] for r in reps]
        pooled = [x for r in reps for x in r["latencies"]]
        ms = {k: v * 1000 if v is not None else None for k, v in percentiles(pooled).items()}
        statuses: Counter[int] = sum((Counter(r["statuses"]) for r in reps), Counter())
        rows.append(
            {
                "clients": clients,
                "path": kind,
                "requests_per_s": statistics.median(rates),
                "requests_per_s_runs": rates,
                **{f"{k}_ms": v for k, v in ms.items()},
                "requests": len(pooled),
                "non_200": sum(n for s, n in statuses.items() if s != 200),
                "statuses": {str(s): n for s, n in statuses.items()},
            }
        )
    rows.sort(key=lambda r: (r["clients"], r["path"] != STORE))
    by_level = {(r["clients"], r["path"]): r for r in rows}
    for row in rows:
        base = by_level.get((row["clients"], STORE))
        if base and row["path"] == HTTP and base["requests_per_s"]:
            row["vs_store"] = f"{row['requests_per_s'] / base['requests_per_s']:.3g}×"
        elif row["path"] == STORE:
            row["vs_store"] = "baseline"
    return rows


# ---------------------------------------------------------------------------
# The run


def wait_for_first_view(store: SqliteStore, health: Callable[[], None]) -> float:
    """Block until item_ratings has taken in its first ratings; return the seconds waited."""
    started = time.perf_counter()
    while not store.positions(ITEM_VIEW, TOPIC_RATINGS):
        health()
        if time.perf_counter() - started > FIRST_VIEW_TIMEOUT_S:
            raise RuntimeError(f"no {ITEM_VIEW} batch within {FIRST_VIEW_TIMEOUT_S:.0f} s")
        time.sleep(0.2)
    return time.perf_counter() - started


def settle(seconds: float, health: Callable[[], None]) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        health()
        time.sleep(0.5)


def once(action: Callable[[], None]) -> Callable[[], None]:
    """`action`, run by the first call only (cleanups that run early and again on exit)."""
    done = threading.Event()

    def run() -> None:
        if not done.is_set():
            done.set()
            action()

    return run


def print_driver_log(path: Path | None, lines: int = 40) -> None:
    if path is not None and path.exists():
        tail = path.read_text(errors="replace").splitlines()[-lines:]
        log(f"--- last {len(tail)} lines of {path.name} ---\n" + "\n".join(tail))


@dataclass
class Freshness:
    """What part 1 measured, per rate and serving mode."""

    probes: dict[tuple[float, str], list[Probe]] = field(default_factory=dict)
    stages: dict[tuple[float, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    polling: dict[tuple[float, str], dict[str, Any]] = field(default_factory=dict)
    traffic: list[dict[str, Any]] = field(default_factory=list)
    drains: list[float] = field(default_factory=list)
    first_view_s: float = 0.0


def serve_in(pipeline: Pipeline, mode: str) -> None:
    """Restart the pipeline's serving query in `mode` (the lake path runs on); the new
    query starts after the store's positions."""
    assert pipeline.serving is not None
    if pipeline.serving.settings.serving.real_time == MODES[mode]:
        return
    names = STAGES[SERVING_STAGE]
    for query in [q for q in pipeline.queries if q.name in names]:
        query.stop()
        pipeline.queries.remove(query)
    serving = pipeline.settings.serving.model_copy(update={"real_time": MODES[mode]})
    pipeline.serving.settings = pipeline.settings.model_copy(update={"serving": serving})
    pipeline.start_serving()


def measure_freshness(
    spark: SparkSession,
    settings: Settings,
    plan: Plan,
    warmup: int,
    base_url_holder: list[str],
    stack: contextlib.ExitStack,
) -> Freshness:
    """Part 1. Leaves the API running (its URL in `base_url_holder`); stops the rest."""
    world = load_world(settings)
    skus = world.products["sku"].tolist()
    customers = world.customers["customer_id"].tolist()
    traffic = Traffic(settings)
    stop_traffic = once(traffic.stop)
    pipeline = Pipeline(spark, settings)
    stop_pipeline = once(pipeline.stop)
    stack.callback(stop_pipeline)
    stack.callback(stop_traffic)

    started = time.perf_counter()
    traffic.start(plan.rates[0], seed=1)
    log(f"background traffic at {plan.rates[0]:,.0f} events/s")
    log("starting the pipeline ...")
    pipeline.start()
    supervisor = Supervisor(pipeline)
    supervisor.start()
    stop_supervisor = once(supervisor.stop)
    stack.callback(stop_supervisor)
    log(f"  {len(pipeline.queries)} queries running after {time.perf_counter() - started:.0f} s")
    server, base_url = start_background(settings)
    stack.callback(once(server.stop))
    base_url_holder.append(base_url)
    log(f"API at {base_url}")

    def health() -> None:
        supervisor.check()
        traffic.check()

    store = SqliteStore(settings.views.store_path)
    result = Freshness()
    result.first_view_s = wait_for_first_view(store, health)
    log(f"first {ITEM_VIEW} batch in the store after {time.perf_counter() - started:.0f} s")

    partitions = settings.kafka.topics[TOPIC_RATINGS].partitions
    for i, rate in enumerate(plan.rates):
        if i:
            traffic.start(rate, seed=1 + i)
            log(f"background traffic now at {rate:,.0f} events/s")
        modes = plan.modes if i % 2 == 0 else plan.modes[::-1]
        for mode in modes:
            serve_in(pipeline, mode)
            log(f"  serving query in {mode} mode")
            if plan.settle_s:
                log(f"  settling for {plan.settle_s:.0f} s ...")
                settle(plan.settle_s, health)
            watch = TransportWatch(settings.kafka.bootstrap, TOPIC_RATINGS, partitions)
            prober = Prober(
                base_url, settings.serve.api_token, skus, customers, settings.views.last_ratings,
                health, lambda p: store.positions(ITEM_VIEW, TOPIC_RATINGS).get(p), seed=100 + i,
            )  # fmt: skip
            log(f"  {warmup} warm-up + {plan.probes} probes, one a second ...")
            since = time.time()
            poll_started = time.perf_counter()
            try:
                probes = prober.run(plan.probes, warmup, plan.bound_s)
            finally:
                prober.close()
                watch.stop()
            poll_seconds = time.perf_counter() - poll_started
            for probe in probes:
                arrived = watch.arrival(probe.partition, probe.offset)
                probe.consumed_s = None if arrived is None else arrived - probe.t0
            key = (rate, mode)
            result.probes[key] = probes
            result.stages[key] = stage_batches(pipeline, since, time.time())
            result.polling[key] = {
                "gets": prober.gets,
                "gets_per_s": prober.gets / poll_seconds,
                "non_200": {str(s): n for s, n in prober.get_errors.items()},
                "out_of_order": sum(p.out_of_order for p in probes),
            }
    for step, action in (
        ("the supervisor", stop_supervisor),
        ("the background traffic", stop_traffic),
        ("the pipeline", stop_pipeline),
    ):
        log(f"stopping {step} ...")
        stopping = time.perf_counter()
        action()
        log(f"  stopped in {time.perf_counter() - stopping:.0f} s")
    result.traffic = traffic.reports
    result.drains = supervisor.drains
    for report in traffic.reports:
        log(f"  traffic: {report['events']:,} events at {report['rate']:,.1f} events/s")
    return result


@dataclass
class Measured:
    """Everything a run measured, for `publish`."""

    settings: Settings
    fresh: Freshness
    runs: dict[tuple[int, str], list[dict[str, Any]]]
    skus: int
    rated: int
    load_seconds: float


def measure(plan: Plan, warmup: int, repetitions: int, stack: contextlib.ExitStack) -> Measured:
    """Both parts, every piece registered on `stack` so that it is stopped on any exit."""
    token = "bench-" + secrets.token_hex(8)
    tmp, settings = stack.enter_context(workspace("serving", f"serve.api_token={token}"))
    try:
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        log(
            f"trigger intervals: serving {settings.serving.trigger_interval}, ingest "
            f"{settings.ingest.trigger_interval}, refine {settings.refine.trigger_interval}, "
            f"gold views {settings.views.trigger_interval}"
        )
        log("starting Spark ...")
        spark = build_spark(settings)
        stop_spark = once(spark.stop)
        stack.callback(stop_spark)
        started = time.perf_counter()
        write_world(spark, settings, settings.world.seed, SCALE)
        log(f"world (seed {settings.world.seed}, {SCALE}) in {time.perf_counter() - started:.1f} s")
        urls: list[str] = []
        fresh = measure_freshness(spark, settings, plan, warmup, urls, stack)
        stop_spark()
    except Exception:
        print_driver_log(settings.spark.driver_log)
        raise

    started = time.perf_counter()
    store_path = settings.views.sqlite_path
    assert store_path is not None
    store = SqliteStore(store_path)
    skus = [p["sku"] for p in store.rows("products")]
    rated = len(store.rows(ITEM_VIEW))
    log(
        f"API load: {len(skus)} skus ({rated} rated), clients {plan.levels}, "
        f"{plan.load_seconds:g} s each after {plan.load_warmup_s:g} s warm-up, "
        f"{repetitions} round(s); pipeline, producer and Spark stopped"
    )
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    stack.callback(lambda: pool.shutdown(wait=True, cancel_futures=True))
    runs = load_rounds(pool, urls[0], store_path, skus, plan, repetitions)
    return Measured(settings, fresh, runs, len(skus), rated, time.perf_counter() - started)


def _rates_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rates", help="background rates of part 1, comma-separated (default: the plan's)"
    )


def main() -> int:
    args = parse_args(__doc__, add_flags=_rates_flag)
    plan = QUICK if args.quick else FULL
    if args.rates:
        plan = replace(plan, rates=tuple(float(r) for r in args.rates.split(",")))
    warmup = plan.warmup_probes if args.warmup is None else args.warmup
    repetitions = args.repetitions or plan.repetitions
    began = time.perf_counter()
    # SIGTERM unwinds like Ctrl-C, so that the broker and the queries are stopped too.
    signal.signal(signal.SIGTERM, lambda signum, _: sys.exit(128 + signum))
    with contextlib.ExitStack() as stack:
        try:
            measured = measure(plan, warmup, repetitions, stack)
        except (KeyboardInterrupt, SystemExit):
            log("\ninterrupted: stopping the pipeline, the API and the broker ...")
            raise
    elapsed = time.perf_counter() - began
    log(f"\nwhole run {elapsed / 60:.1f} min (API load part {measured.load_seconds:.0f} s)")
    publish(args.quick, plan, warmup, repetitions, measured, elapsed)
    return 0


# Freshness spans 0.01 s (Kafka) to minutes (the pipeline), requests/s two orders: log axes.
FRESHNESS_PLOT = Plot(("rate", "mode", "path"), ("p50", "p95", "p99"), "seconds (log)", log=True)
LOAD_PLOT = Plot(("clients", "path"), ("requests_per_s",), "requests per second (log)", log=True)


def batch_figures(stage: dict[str, Any]) -> str:
    """How many data batches a stage ran during the probes, and their median / max seconds."""
    if stage["median_s"] is None:
        return f"{stage['data_batches']}, –"
    return f"{stage['data_batches']}, {stage['median_s']:.1f} / {stage['max_s']:.1f}"


def publish(
    quick: bool,
    plan: Plan,
    warmup: int,
    repetitions: int,
    measured: Measured,
    elapsed: float,
) -> None:
    settings, fresh, runs = measured.settings, measured.fresh, measured.runs
    triggers = (
        f"serving {settings.serving.trigger_interval}, ingest {settings.ingest.trigger_interval}, "
        f"refine {settings.refine.trigger_interval}, gold {settings.views.trigger_interval}"
    )
    fresh_rows = [
        row
        for (rate, mode), probes in sorted(fresh.probes.items())
        for row in summarise_probes(rate, mode, probes)
    ]
    load_rows = summarise_load(runs)
    tables = [
        Table(
            f"Freshness: seconds from a rating's POST to … (trigger intervals: {triggers})",
            [
                Column("rate", "background events/s", ",.0f"),
                Column("mode", "serving query"),
                Column("path", "path"),
                Column("probes", "probes"),
                Column("p50", "p50 s", ".2f"),
                Column("p95", "p95 s", ".2f"),
                Column("p99", "p99 s", ".2f"),
                Column("max", "max s", ".2f"),
                Column("not_seen", f"not seen in {plan.bound_s:.0f} s"),
                Column("displaced", "displaced"),
            ],
            fresh_rows,
            FRESHNESS_PLOT,
        ),
        Table(
            "API serving speed: `GET /v1/items/{sku}` on random known skus, closed loop "
            "(pipeline stopped)",
            [
                Column("clients", "clients"),
                Column("path", "path"),
                Column("requests_per_s", "requests/s", ",.0f"),
                Column("p50_ms", "p50 ms", ".2f"),
                Column("p95_ms", "p95 ms", ".2f"),
                Column("p99_ms", "p99 ms", ".2f"),
                Column("max_ms", "max ms", ".1f"),
                Column("non_200", "non-200"),
                Column("vs_store", "vs store"),
            ],
            load_rows,
            LOAD_PLOT,
        ),
    ]
    notes = []
    for rate, mode in sorted(fresh.probes):
        rows = {r["path"]: r for r in fresh_rows if (r["rate"], r["mode"]) == (rate, mode)}
        pipe, floor = rows[PIPELINE]["p50"], rows[TRANSPORT]["p50"]
        stages = fresh.stages[rate, mode]
        polling = fresh.polling[rate, mode]
        if pipe is not None and floor is not None:
            added = f"the pipeline adds **{pipe - floor:.2f} s** (p50) to the Kafka transport floor"
        else:
            added = f"**no probe became visible within {plan.bound_s:.0f} s**"
        achieved = [t["rate"] for t in fresh.traffic if t["rate_asked"] == rate]
        if achieved:
            added += f" (background traffic achieved {achieved[0]:,.0f} events/s)"
        notes.append(
            f"At {rate:,.0f} events/s, serving in {mode} mode, {added}. Batches with data "
            "during the probes (a real-time query's batch is a checkpoint interval) "
            "(count, median / max seconds): "
            + "; ".join(f"{label} {batch_figures(s)}" for label, s in stages.items())
            + f". Polling: {polling['gets_per_s']:.0f} GET/s, {polling['out_of_order']} probes "
            "seen out of Kafka order."
        )
        notes.append("")
    if fresh.drains:
        notes.append(
            f"Refine metrics drained every {HEALTH_EVERY_S:g} s as the demo does (one Delta append "
            f"per refine batch): {len(fresh.drains)} drains, median "
            f"{statistics.median(fresh.drains):.1f} s, max {max(fresh.drains):.1f} s, "
            f"{sum(fresh.drains):.0f} s in all."
        )
        notes.append("")
    by_level = {(r["clients"], r["path"]): r for r in load_rows}
    added_ms = []
    for c in plan.levels:
        http, store = by_level[c, HTTP]["p50_ms"], by_level[c, STORE]["p50_ms"]
        if http is not None and store is not None:
            added_ms.append(f"{c} client{'s' if c > 1 else ''} {http - store:.2f}")
    notes.append(
        "HTTP (client, uvicorn, FastAPI, JSON) adds to the store look-ups, at p50, ms: "
        + "; ".join(added_ms)
        + "."
    )
    notes.append("")
    notes.append(
        "A rating passes one query, the serving path (Kafka -> serving store). In real-time "
        "mode a long-lived task per partition writes each record's facts to the facts topic "
        "and one folder thread folds each 20 ms poll; in micro-batch mode the next batch "
        "starts as soon as one ends, and the freshness floor is about one and a half of its "
        "batch durations. The lake path's queries (ingest, refine, gold) run beside it in the "
        "same application, in a scheduler pool of lower weight, through both modes."
    )
    description = (
        "End-to-end freshness: a rating posted through the API (`POST /v1/items/{sku}/ratings`) "
        "until a plain `GET /v1/items/{sku}` lists its event_id, polled every "
        f"{POLL_INTERVAL_S * 1000:.0f} ms, one probe a second, {plan.probes} probes (+{warmup} "
        f"warm-up) at each background rate ({', '.join(f'{r:,.0f}' for r in plan.rates)} "
        "generated events/s from `produce`) and serving mode "
        f"({', '.join(plan.modes)}: the serving query restarted in each in turn, after "
        f"{plan.settle_s:.0f} s of settling), with the demo's `Pipeline` (the serving path "
        "Kafka → serving store, and the lake path ingest → refine → gold, one SparkSession, "
        f"`{settings.spark.master}`, triggers {triggers}) and the API in one process; against "
        "the baseline of the same probes' Kafka transport (a plain "
        "consumer of shop.ratings). Then API serving speed: `GET /v1/items/{sku}` by "
        f"{', '.join(str(c) for c in plan.levels)} closed-loop clients "
        f"({plan.load_seconds:g} s each, {repetitions} round(s), clients in a separate "
        "process, pipeline stopped), against the baseline of the same store look-ups in-process "
        "at the same concurrency."
    )
    publish_tables(
        "serving",
        "Freshness and API serving speed (`bench/bench_serving.py`)",
        description,
        tables,
        params={
            "rates": "/".join(f"{r:g}" for r in plan.rates),
            "probes": plan.probes,
            "warmup_probes": warmup,
            "clients": "/".join(str(c) for c in plan.levels),
            "seconds_per_level": plan.load_seconds,
            "repetitions": repetitions,
            "world": SCALE,
        },
        quick=quick,
        notes=notes,
        extra={
            "trigger_intervals": {
                "serving": settings.serving.trigger_interval,
                "ingest": settings.ingest.trigger_interval,
                "refine": settings.refine.trigger_interval,
                "views": settings.views.trigger_interval,
            },
            "spark_master": settings.spark.master,
            "poll_interval_s": POLL_INTERVAL_S,
            "probe_interval_s": PROBE_INTERVAL_S,
            "visible_bound_s": plan.bound_s,
            "first_view_s": fresh.first_view_s,
            "stages": {f"{r:g} {m}": s for (r, m), s in fresh.stages.items()},
            "polling": {f"{r:g} {m}": p for (r, m), p in fresh.polling.items()},
            "probes": {
                f"{r:g} {m}": [asdict(p) for p in ps] for (r, m), ps in fresh.probes.items()
            },
            "skus": measured.skus,
            "rated_skus": measured.rated,
            "traffic": fresh.traffic,
            "metrics_drain_seconds": fresh.drains,
            "load_runs": {
                f"{c} {k}": [
                    {"requests": r["requests"], "seconds": r["seconds"]}
                    | {"statuses": {str(s): n for s, n in r["statuses"].items()}}
                    for r in reps
                ]
                for (c, k), reps in runs.items()
            },
            "whole_run_seconds": elapsed,
        },
    )


if __name__ == "__main__":
    sys.exit(main())
