"""Demo: broker -> world -> live events -> bronze -> silver -> gold -> API and dashboard.

Serves the API and dashboard first (the catalogue and the initial stock come
straight from the generated world), starts the local broker when config uses
it and it is not running, then Spark and the serving query (Kafka -> serving
store), publishes generated events at a steady rate (`produce`, on a thread),
and, once the serving path has folded its first records, writes the reference
data to the lake (`world init`) and starts the lake path (ingest, refine, gold
views), all in one Spark application. Runs
until Ctrl-C (or `--duration`), then stops the producer (flushed), every
query (checkpointed) and the server: a later run resumes where this one ended.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings, load_settings
from retailstream.errors import UserError
from retailstream.health.progress import Reporter
from retailstream.io import datasets
from retailstream.io.datasets import bronze_table
from retailstream.io.delta import StreamTrigger, has_commits
from retailstream.jars import classpath
from retailstream.jobs import (
    build_views,
    ingest_events,
    init_world,
    produce_events,
    refine_events,
    serving_views,
)
from retailstream.jobs.interrupts import stop_requests
from retailstream.jobs.launcher import launch_without_spark
from retailstream.kafka.broker import LocalBroker
from retailstream.kafka.topics import create_topics
from retailstream.session import LAKE_POOL, SERVING_POOL, scheduler_pool
from retailstream.views.store import ServingStore, open_store
from retailstream.world import build_world


def _start_local_broker(settings: Settings) -> LocalBroker | None:
    """Start the local broker if config uses it and it is down; return it if we started it."""
    if not settings.kafka.local_broker.enabled or settings.kafka.bootstrap_servers:
        print(f"[2/5] using the Kafka cluster at {settings.kafka.bootstrap}")
        return None
    local = LocalBroker(settings.kafka.local_broker, classpath(settings.home, "kafka-broker"))
    if local.pid() is not None:
        print(f"[2/5] Kafka broker already running on {local.bootstrap}")
        return None
    seconds = local.start(tethered=True)  # the demo's own: it never outlives the demo
    print(f"[2/5] Kafka broker started on {local.bootstrap} in {seconds:.1f}s")
    return local


METRICS_EVERY_S = 30.0
BRONZE_WAIT_S = 600.0
# How long the lake path's start waits for the serving path's first fold at most.
FIRST_FOLD_WAIT_S = 60.0


def _wait_until(done: Callable[[], bool], alive: Callable[[], None], timeout_s: float) -> bool:
    """Poll `done` (checking `alive` in between) until it holds; False after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not done():
        alive()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


class Pipeline:
    """The demo's streaming queries in one Spark application: the serving path
    (Kafka -> serving store) and the lake path (ingest, refine, gold views)."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        self.spark = spark
        self.settings = settings
        self.queries: list[StreamingQuery] = []
        self.refine: refine_events.RefineRun | None = None
        self.refine_query: StreamingQuery | None = None
        self.references: dict[str, DataFrame] = {}
        self.serving: serving_views.ServingPath | None = None

    def check(self) -> None:
        """Raise the first query failure (a demo that silently stalls helps nobody)."""
        for query in self.queries:
            error = query.exception()
            if error is not None:
                raise UserError(f"query {query.name} failed: {str(error).splitlines()[0]}")

    def reference_tables(self) -> list[str]:
        """The reference tables the queries check or join against."""
        wanted = (
            set(datasets.REFERENCE_TABLES)
            | build_views.reference_tables(self.settings)
            | {"initial_stock"}
        )
        return sorted(wanted)

    def prepare(
        self, world: Mapping[str, pd.DataFrame] | None = None, seed_store: bool = True
    ) -> None:
        """What the queries share, done once before events flow (nothing competes yet):
        the reference tables, the suites and their value sets, and (`seed_store`) the
        serving store's catalogue and initial stock (once). The tables come from the
        generated `world` (`World.tables()`) when given, else from the lake."""
        settings = self.settings
        if world is None:
            self.references = datasets.load_references(
                self.spark, settings, self.reference_tables()
            )
        else:  # cached in memory: the small tables Delta would give back, minus its log reads
            self.references = {
                name: self.spark.createDataFrame(world[name]).cache()
                for name in self.reference_tables()
            }
        self.refine = refine_events.RefineRun(self.spark, settings, world or self.references)
        store = open_store(settings.views.store_path)
        self.serving = serving_views.ServingPath(
            self.spark, settings, store, self.references, self.refine.known
        )
        if seed_store:
            self.serving.prepare_store()

    @property
    def store(self) -> ServingStore:
        assert self.serving is not None
        return self.serving.store

    def start(self) -> None:
        """Start the serving query, then the lake path: four queries."""
        self.start_serving()
        self.start_lake()

    def start_serving(self) -> None:
        """Start the serving query, in its own scheduler pool (`session.SERVING_POOL`),
        weighted so that its small jobs overtake the lake's large ones: on a
        laptop every query shares two cores."""
        if self.refine is None or self.serving is None:
            self.prepare()
        assert self.serving is not None
        serving = StreamTrigger(False, self.settings.serving.trigger_interval)
        with scheduler_pool(self.spark, SERVING_POOL):
            self.queries.append(self.serving.start(serving))

    def await_first_fold(self, timeout_s: float) -> bool:
        """Wait until the serving path has folded records (False after `timeout_s`)."""
        assert self.serving is not None
        return _wait_until(self.serving.folded.is_set, self.check, timeout_s)

    def start_lake(self) -> None:
        """Start the lake path: ingest, refine (one query for every topic) and gold
        (one query for every view), in the lake's scheduler pool."""
        settings = self.settings
        assert self.refine is not None
        with scheduler_pool(self.spark, LAKE_POOL):
            # The empty silver tables, so that the gold views need not wait for
            # refine's first batches: after the serving query, which needs none.
            self.refine.create_silver_tables()
            ingest = StreamTrigger(False, settings.ingest.trigger_interval)
            self.queries.append(ingest_events.start(self.spark, settings, ingest))
            bronze = bronze_table(settings)
            if not _wait_until(lambda: has_commits(bronze), self.check, BRONZE_WAIT_S):
                raise UserError(f"bronze did not appear within {BRONZE_WAIT_S:.0f}s")
            refine = StreamTrigger(False, settings.refine.trigger_interval)
            self.refine_query = self.refine.start(refine)
            self.queries.append(self.refine_query)
            gold = StreamTrigger(False, settings.views.trigger_interval)
            self.queries.append(
                build_views.start(self.spark, settings, gold, None, self.references)
            )

    def drain_metrics(self) -> None:
        if self.refine is not None and self.refine_query is not None:
            self.refine.drain(self.refine_query)

    def stop(self) -> None:
        """Stop every query (each resumes from its checkpoint next time: nothing is lost)."""
        for query in self.queries:
            if query.isActive:
                query.stop()
        self.drain_metrics()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    from retailstream.serve.server import start_background
    from retailstream.session import build_spark

    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the demo as cleanly as Ctrl-C

    if not settings.serve.api_token:  # commands need a token: make a one-off one for the demo
        serve = settings.serve.model_copy(update={"api_token": secrets.token_urlsafe(12)})
        settings = settings.model_copy(update={"serve": serve})
    brokers: list[LocalBroker | None] = []
    broker_start = threading.Thread(
        target=lambda: brokers.append(_start_local_broker(settings)), name="demo-broker"
    )
    stop_producing = threading.Event()
    producer_thread: threading.Thread | None = None
    server = None
    pipeline: Pipeline | None = None
    reporter: Reporter | None = None
    try:
        started = time.monotonic()
        # The API first, before Spark (which takes 10-20 s on a laptop): the
        # catalogue and the initial stock come straight from the generated world.
        tables = build_world(settings.world.seed, settings.world.scale).tables()
        rows = serving_views.world_rows(tables)
        serving_views.prepare_store(open_store(settings.views.store_path), rows, settings)
        server, url = start_background(settings, port=settings.serve.port)
        print(
            f"[1/5] dashboard and API at {url}/  (API docs: {url}/docs; command token: "
            f"{settings.serve.api_token}); the views fill as events flow",
            flush=True,
        )
        # The broker boots (~5 s, its own JVM) while Spark starts and the world is
        # written: nothing before the producer needs it.
        broker_start.start()
        spark = build_spark(settings)
        reporter = Reporter(spark, settings).start()  # what /metrics and `status` read
        pipeline = Pipeline(spark, settings)
        # The queries check and join against the world in memory: the lake's copy
        # of it (seconds of Delta commits) is written while events already flow. The
        # store was seeded from the same world above.
        pipeline.prepare(tables, seed_store=False)
        broker_start.join()
        if not brokers:
            raise UserError("the Kafka broker did not start (its error is above)")
        create_topics(settings.kafka.bootstrap, settings.kafka.topics)
        # `produce` rebuilds the world from its spec (seed and scale) alone.
        init_world.write_spec(settings, settings.world.seed, settings.world.scale, tables)
        produce_args = argparse.Namespace(
            events=None, duration="8760h",  # until the demo stops it
            rate=args.rate, seed=int(time.time()), start=None, sim_seconds_per_event=None,
            quiet=True,
        )  # fmt: skip
        reports: list[produce_events.PublishReport] = []
        producer_thread = threading.Thread(
            target=lambda: reports.append(
                produce_events.produce(settings, produce_args, stop_producing.is_set)
            ),
            name="demo-producer",
            daemon=True,
        )
        producer_thread.start()
        pipeline.start_serving()
        print(
            f"[3/5] Spark {spark.version} up, producing events at {args.rate:,.0f} events/s, "
            f"serving query started after {time.monotonic() - started:.0f}s",
            flush=True,
        )
        # The lake's work (the world's copy, three queries' plans and first batches)
        # waits for the serving path's first fold: started together, the two warm
        # up on the same cores and the first views come later.
        pipeline.await_first_fold(FIRST_FOLD_WAIT_S)
        writing = time.monotonic()
        init_world.write_tables(spark, settings, tables)
        print(
            f"[4/5] the world in the lake in {time.monotonic() - writing:.1f}s: "
            f"{len(tables['products'])} products, {len(tables['stores'])} stores, "
            f"{len(tables['customers'])} customers",
            flush=True,
        )
        pipeline.start_lake()
        print(
            f"[5/5] streaming: Kafka -> serving views, and ingest -> refine -> gold "
            f"({len(pipeline.queries)} queries) "
            f"after {time.monotonic() - started:.0f}s; Ctrl-C stops",
            flush=True,
        )
        deadline = time.monotonic() + args.duration if args.duration else None
        next_drain = time.monotonic() + METRICS_EVERY_S
        with stop_requests() as request:  # Ctrl-C is seen here, between Py4J calls
            while deadline is None or time.monotonic() < deadline:
                pipeline.check()
                if time.monotonic() >= next_drain:  # a Delta commit per table: not too often
                    pipeline.drain_metrics()
                    next_drain = time.monotonic() + METRICS_EVERY_S
                if request.wait(1):
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        stop_producing.set()
        if producer_thread is not None:
            producer_thread.join(timeout=60)
        if pipeline is not None:
            pipeline.stop()
        if reporter is not None:
            reporter.stop()
        if server is not None:
            server.stop()
        if broker_start.is_alive():
            broker_start.join()
        broker = brokers[0] if brokers else None
        if broker is not None and not args.keep_broker:
            broker.stop()
            print(
                f"Kafka broker stopped (its data stays in {settings.kafka.local_broker.data_dir})"
            )
    print("stopped cleanly: every query resumes from its checkpoint on the next run")
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)"
    )
    parser.add_argument("--rate", type=float, default=200, help="events per second")
    parser.add_argument("--keep-broker", action="store_true", help="leave the broker running")


def main(argv: Sequence[str] | None = None) -> int:
    return launch_without_spark(
        __doc__.splitlines()[0],
        lambda args: run_demo(load_settings(args.env, args.overrides), args),
        argv,
        add_flags,
        prog="demo",
    )
