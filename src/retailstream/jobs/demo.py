"""Demo: broker -> world -> live events -> bronze -> silver -> gold -> API and dashboard.

Starts the local broker when config uses it and it is not running, writes the
reference data (`world init`), publishes generated events at a steady rate
(`produce`, on a thread), runs ingest, refine and the views as streaming
queries in one Spark application, and serves the API and dashboard. Runs
until Ctrl-C (or `--duration`), then stops the producer (flushed), every
query (checkpointed) and the server: a later run resumes where this one ended.
"""

from __future__ import annotations

import argparse
import secrets
import signal
import threading
import time
from collections.abc import Callable, Sequence

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings, load_settings
from retailstream.errors import UserError
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
from retailstream.jobs.launcher import launch_without_spark
from retailstream.kafka.broker import LocalBroker
from retailstream.session import LAKE_POOL, SERVING_POOL, scheduler_pool
from retailstream.views.store import ServingStore, open_store


def _start_local_broker(settings: Settings) -> LocalBroker | None:
    """Start the local broker if config uses it and it is down; return it if we started it."""
    if not settings.kafka.local_broker.enabled or settings.kafka.bootstrap_servers:
        print(f"[1/5] using the Kafka cluster at {settings.kafka.bootstrap}")
        return None
    local = LocalBroker(settings.kafka.local_broker, classpath(settings.home, "kafka-broker"))
    if local.pid() is not None:
        print(f"[1/5] Kafka broker already running on {local.bootstrap}")
        return None
    seconds = local.start()
    print(f"[1/5] Kafka broker started on {local.bootstrap} in {seconds:.1f}s")
    return local


METRICS_EVERY_S = 30.0
BRONZE_WAIT_S = 600.0


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

    def prepare(self) -> None:
        """What the queries share, done once before events flow (nothing competes yet):
        the reference tables, the suites and their value sets, the empty silver
        tables (so the gold views need not wait for refine's first batches), and
        the serving store's catalogue and initial stock."""
        settings = self.settings
        tables = (
            set(refine_events.REFERENCE_TABLES)
            | build_views.reference_tables(settings)
            | {"initial_stock"}
        )
        self.references = refine_events.load_references(self.spark, settings, sorted(tables))
        self.refine = refine_events.RefineRun(self.spark, settings, self.references)
        self.refine.create_silver_tables()
        store = open_store(settings.views.sqlite_path)
        self.serving = serving_views.ServingPath(self.spark, settings, store, self.references)
        self.serving.prepare_store()

    @property
    def store(self) -> ServingStore:
        assert self.serving is not None
        return self.serving.store

    def start(self) -> None:
        """Start the serving query, then the lake path: ingest, refine (one query for
        every topic) and gold (one query for every view): four queries.

        The serving query runs in its own scheduler pool (`session.SERVING_POOL`),
        weighted so that its small jobs overtake the lake's large ones: on a
        laptop every query shares two cores.
        """
        settings = self.settings
        if self.refine is None or self.serving is None:
            self.prepare()
        assert self.refine is not None and self.serving is not None
        serving = StreamTrigger(False, settings.serving.trigger_interval)
        with scheduler_pool(self.spark, SERVING_POOL):
            self.queries.append(self.serving.start(serving))
        with scheduler_pool(self.spark, LAKE_POOL):
            ingest = StreamTrigger(False, settings.ingest.trigger_interval)
            self.queries.append(ingest_events.start(self.spark, settings, ingest))
            bronze = settings.lake.table(ingest_events.BRONZE_TABLE)
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
    # The broker boots (~5 s, its own JVM) while Spark starts and the world is
    # written: nothing before the producer needs it.
    brokers: list[LocalBroker | None] = []
    broker_start = threading.Thread(
        target=lambda: brokers.append(_start_local_broker(settings)), name="demo-broker"
    )
    broker_start.start()
    stop_producing = threading.Event()
    producer_thread: threading.Thread | None = None
    server = None
    pipeline: Pipeline | None = None
    try:
        started = time.monotonic()
        spark = build_spark(settings)
        counts = init_world.write_world(spark, settings, settings.world.seed, settings.world.scale)
        print(
            f"[2/5] Spark {spark.version} up and the world written in "
            f"{time.monotonic() - started:.1f}s: {counts['products']} products, "
            f"{counts['stores']} stores, {counts['customers']} customers",
            flush=True,
        )
        pipeline = Pipeline(spark, settings)
        pipeline.prepare()
        server, url = start_background(settings, port=settings.serve.port)
        print(
            f"[3/5] dashboard and API at {url}/  (API docs: {url}/docs; command token: "
            f"{settings.serve.api_token}); the views fill as events flow",
            flush=True,
        )
        broker_start.join()
        if not brokers:
            raise UserError("the Kafka broker did not start (its error is above)")
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
        print(f"[4/5] producing events at {args.rate:,.0f} events/s", flush=True)
        pipeline.start()
        print(
            f"[5/5] streaming: Kafka -> serving views, and ingest -> refine -> gold "
            f"({len(pipeline.queries)} queries) "
            f"after {time.monotonic() - started:.0f}s; Ctrl-C stops",
            flush=True,
        )
        deadline = time.monotonic() + args.duration if args.duration else None
        next_drain = time.monotonic() + METRICS_EVERY_S
        while deadline is None or time.monotonic() < deadline:
            pipeline.check()
            if time.monotonic() >= next_drain:  # a Delta commit per table: not too often
                pipeline.drain_metrics()
                next_drain = time.monotonic() + METRICS_EVERY_S
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...", flush=True)
    finally:
        stop_producing.set()
        if producer_thread is not None:
            producer_thread.join(timeout=60)
        if pipeline is not None:
            pipeline.stop()
        if server is not None:
            server.stop()
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
