"""The `retailstream` command.

Every subcommand has `--help`. A user mistake prints one line on stderr and
exits non-zero; stack traces (Python or Java) only with `--verbose`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from retailstream import __version__, sql_server
from retailstream.config import Settings, find_home, load_settings, shipped_config_files
from retailstream.errors import UserError
from retailstream.jobs import all_jobs, produce_events
from retailstream.jobs import demo as demo_job
from retailstream.jobs.launcher import PROG, add_common_flags, guarded, iso_time, with_session
from retailstream.jobs.spec import Job

Handler = Callable[[argparse.Namespace], int | None]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.env, args.overrides)


def _local_broker(settings: Settings):  # noqa: ANN202 - LocalBroker, imported lazily
    from retailstream.jars import classpath
    from retailstream.kafka.broker import LocalBroker

    if settings.kafka.bootstrap_servers:
        raise UserError(
            f"kafka.bootstrap_servers is set ({settings.kafka.bootstrap_servers}): "
            "the local broker is not used; manage your cluster with its own tools"
        )
    return LocalBroker(settings.kafka.local_broker, classpath(settings.home, "kafka-broker"))


# -- kafka ------------------------------------------------------------------


def kafka_start(args: argparse.Namespace) -> int:
    settings = _settings(args)
    broker = _local_broker(settings)
    if not settings.kafka.local_broker.enabled:
        raise UserError("kafka.local_broker.enabled is false in config: not starting it")
    seconds = broker.start()
    print(
        f"Kafka broker running on {broker.bootstrap} (started in {seconds:.1f}s; log: {broker.log_file})"
    )
    if args.create_topics:
        _print_topic_outcome(settings)
    return 0


def kafka_stop(args: argparse.Namespace) -> int:
    broker = _local_broker(_settings(args))
    print("Kafka broker stopped" if broker.stop() else "Kafka broker was not running")
    return 0


def kafka_status(args: argparse.Namespace) -> int:
    status = _local_broker(_settings(args)).status()
    print(f"Kafka broker {status.describe()}")
    return 0 if status.running and status.reachable else 3


# -- postgres ---------------------------------------------------------------


def _local_postgres(settings: Settings):  # noqa: ANN202 - LocalPostgres, imported lazily
    from retailstream.postgres_server import local_postgres

    if settings.postgres.writer_dsn:
        raise UserError(
            "postgres.writer_dsn is set: the local PostgreSQL server is not used; "
            "manage your server with its own tools"
        )
    return local_postgres(settings)


def postgres_start(args: argparse.Namespace) -> int:
    settings = _settings(args)
    server = _local_postgres(settings)
    if not settings.postgres.local_server.enabled:
        raise UserError("postgres.local_server.enabled is false in config: not starting it")
    running = server.pid() is not None
    seconds = server.start()
    how = "already running" if running else f"started in {seconds:.1f}s"
    print(
        f"PostgreSQL running on {server.address}, database {server.database} "
        f"({how}; roles in {server.roles_file}; log: {server.log_file})"
    )
    return 0


def postgres_stop(args: argparse.Namespace) -> int:
    server = _local_postgres(_settings(args))
    print("PostgreSQL stopped" if server.stop() else "PostgreSQL was not running")
    return 0


def postgres_status(args: argparse.Namespace) -> int:
    status = _local_postgres(_settings(args)).status()
    print(f"PostgreSQL {status.describe()}")
    return 0 if status.running and status.accepting else 3


def pipeline_status(args: argparse.Namespace) -> int:
    """Each stream's rates, batches and lag, then one line saying what is wrong."""
    from retailstream.health.report import document, pipeline_health, render

    stages, kafka_error = pipeline_health(_settings(args))
    print(render(stages, kafka_error))
    return 0 if document(stages, kafka_error)["healthy"] else 3


# -- topics -----------------------------------------------------------------


def _print_topic_outcome(settings: Settings) -> None:
    from retailstream.kafka.topics import create_topics

    for name, outcome in create_topics(settings.kafka.bootstrap, settings.kafka.topics).items():
        print(f"{name:<26} {outcome}")


def topics_create(args: argparse.Namespace) -> int:
    _print_topic_outcome(_settings(args))
    return 0


def topics_list(args: argparse.Namespace) -> int:
    from retailstream.kafka.topics import list_topics

    for name in list_topics(_settings(args).kafka.bootstrap):
        print(name)
    return 0


def topics_describe(args: argparse.Namespace) -> int:
    from retailstream.kafka.topics import describe_topics

    for info in describe_topics(_settings(args).kafka.bootstrap, args.topics or None):
        retention = "forever" if info.retention_ms == "-1" else f"{info.retention_ms} ms"
        print(
            f"{info.name}: {len(info.partitions)} partitions, {info.records} records, retention {retention}"
        )
        for part in info.partitions:
            print(
                f"  partition {part.partition}: leader {part.leader}, offsets {part.earliest}..{part.latest}"
            )
    return 0


# -- jars -------------------------------------------------------------------


def jars_resolve(args: argparse.Namespace) -> int:
    from retailstream.jars import jars_dir, resolve

    home = find_home()
    print(f"resolving JVM artifacts into {jars_dir(home)} ...", flush=True)
    for name, paths in resolve(home, force=args.force).items():
        print(f"  {name}: {len(paths)} jars")
    return 0


def jars_path(args: argparse.Namespace) -> int:
    from retailstream.jars import classpath

    separator = "," if args.name == "spark" else os.pathsep
    print(separator.join(str(p) for p in classpath(find_home(), args.name)))
    return 0


# -- config -----------------------------------------------------------------


def config_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(yaml.safe_dump(settings.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def config_check(args: argparse.Namespace) -> int:
    home = find_home()
    files = shipped_config_files(home)
    envs = sorted({p.parent.name for p in files} - {"base"})
    for env in ["base", *envs]:
        load_settings(env if env != "base" else None, args.overrides, home=home)
        print(f"conf/{env}: ok")
    return 0


# -- jobs -------------------------------------------------------------------


def _forward_common(args: argparse.Namespace) -> list[str]:
    forwarded = []
    if args.env:
        forwarded += ["--env", args.env]
    for item in args.overrides:
        forwarded += ["--set", item]
    if args.verbose:
        forwarded.append("--verbose")
    return forwarded


def job_handler(job: Job[Any]) -> Handler:
    """The handler of `run NAME`, `train NAME` or a command (`all_jobs.COMMANDS`): the job
    in a session, with its flags."""
    return lambda args: int(with_session(job.run_with, args) or 0)


def demo(args: argparse.Namespace) -> int:
    return demo_job.run_demo(_settings(args), args)


def produce(args: argparse.Namespace) -> int:
    return produce_events.run(args)


def quality_validate(args: argparse.Namespace) -> int:
    """Run the expectation suites through Great Expectations on the silver tables."""
    from retailstream.jobs.launcher import with_session

    def validate(spark, settings: Settings, _: argparse.Namespace) -> int:  # noqa: ANN001
        from retailstream.io.datasets import load_references
        from retailstream.quality.gx_validation import validate_tables
        from retailstream.quality.reference_values import reference_values
        from retailstream.quality.suites import load_suites

        suites = load_suites(settings.refine.expectations_dir)
        references = reference_values(load_references(spark, settings), suites.values())
        output = settings.lake.root.parent / "quality"
        report = validate_tables(
            spark, settings.lake.root, suites, references, output, args.max_rows
        )
        for line in report.lines():
            print(line)
        return 0 if report.success else 4

    return int(with_session(validate, args) or 0)


def submit(args: argparse.Namespace) -> int:
    """spark-submit a job with the resolved jars, e.g. against a standalone master."""
    from retailstream.jars import classpath

    home = find_home()
    spark_submit = shutil.which("spark-submit") or str(Path(sys.executable).parent / "spark-submit")
    command = [spark_submit, "--jars", ",".join(str(p) for p in classpath(home, "spark"))]
    if args.master:
        command += ["--master", args.master]
    command += [
        str(home / "jobs" / f"{all_jobs.by_submit_name()[args.job].script}.py"),
        *_forward_common(args),
        *args.job_args,
    ]
    return subprocess.call(command)


def views_rebuild(args: argparse.Namespace) -> int:
    """Fold the event store into a fresh serving store (the second computation of the views)."""
    from retailstream.jobs import serving_views

    return int(with_session(serving_views.rebuild_command, args) or 0)


def views_rebuild_gold(args: argparse.Namespace) -> int:
    """Recompute a gold view in batch from silver (repair, or a past state with --as-of)."""
    from retailstream.jobs import build_views

    return int(with_session(build_views.rebuild_command, args) or 0)


def sql(args: argparse.Namespace) -> int:
    """Run a SQL statement over the lake's tables (bronze.events, silver.orders, gold.item_ratings...)."""
    from retailstream import catalog

    return int(with_session(catalog.sql_command, args) or 0)


def _registered_name(settings: Settings, name: str) -> str:
    """A model's registered name from its short name (`recommender`) or as given."""
    short = {
        "recommender": settings.ml.recommender_model,
        "disruption": settings.ml.disruption_model,
    }
    return short.get(name, name)


def models_list(args: argparse.Namespace) -> int:
    from retailstream.ml import registry

    rows = registry.versions(registry.client(_settings(args).ml))
    if not rows:
        print("no registered models yet: `retailstream train recommender` registers the first")
        return 0
    print(f"{'model':32} {'version':>7}  {'aliases':12} {'holdout metric':28} run")
    for r in rows:
        metric = f"{r.metric} {r.value:.4f}" if r.value is not None else "-"
        print(
            f"{r.model:32} {r.version:>7}  {','.join(r.aliases) or '-':12} {metric:28} {r.run_id}"
        )
    return 0


def models_promote(args: argparse.Namespace) -> int:
    from retailstream.ml import registry

    settings = _settings(args)
    name = _registered_name(settings, args.model)
    registry.promote(registry.client(settings.ml), name, args.version)
    print(f"{name}: version {args.version} is the champion")
    return 0


def models_rollback(args: argparse.Namespace) -> int:
    from retailstream.ml import registry

    settings = _settings(args)
    name = _registered_name(settings, args.model)
    version = registry.rollback(registry.client(settings.ml), name)
    print(f"{name}: champion rolled back to version {version}")
    return 0


def _positive(text: str) -> int:
    """A flag's whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return int(text)


def serve(args: argparse.Namespace) -> int:
    """Serve the query/command API and the dashboard until interrupted."""
    from retailstream.serve.server import run_server

    settings = _settings(args)
    print(
        f"retailstream API and dashboard on http://{args.host or settings.serve.host}:"
        f"{args.port if args.port is not None else settings.serve.port}/",
        flush=True,
    )
    run_server(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


def bench(args: argparse.Namespace) -> int:
    """Run benchmarks of bench/ (all by default), each in its own process; exit 1 if any failed."""
    from retailstream import benchmarks

    home = find_home()
    if args.list:
        for name, script in benchmarks.available(home).items():
            print(f"{name:12} {script.relative_to(home)}")
        return 0
    runs = benchmarks.run_benchmarks(
        home, args.names, quick=args.quick, repetitions=args.repetitions, warmup=args.warmup
    )
    print("\n".join(["", *benchmarks.summary(runs, home)]))
    if not args.quick and all(r.ok for r in runs):
        print("BENCHMARKS.md: the sections of these runs and the machine are rewritten")
    return 0 if all(r.ok for r in runs) else 1


# -- parser -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Event-driven retail analytics on Spark, Kafka, Delta Lake and MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_common_flags(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(group: argparse._SubParsersAction, name: str, help_: str, handler: Handler):
        sub = group.add_parser(name, help=help_, description=help_)
        add_common_flags(sub, suppress_defaults=True)
        sub.set_defaults(handler=handler)
        return sub

    def add_job(group: argparse._SubParsersAction, job: Job[Any]) -> None:
        job.add_flags(command(group, job.name, job.help, job_handler(job)))

    # The commands of all_jobs.COMMANDS go where `--help` lists them: these three by
    # name, the others in their order after `sql`.
    placed = {"init", "sample-lake", "retrain"}
    by_name = {job.name: job for job in all_jobs.COMMANDS}

    kafka = commands.add_parser(
        "kafka", help="run the local Kafka broker", description="Run the local Kafka broker."
    )
    kafka_commands = kafka.add_subparsers(dest="action", metavar="ACTION", required=True)
    start = command(
        kafka_commands, "start", "start the broker and wait until it accepts clients", kafka_start
    )
    start.add_argument(
        "--create-topics", action="store_true", help="also create the declared topics"
    )
    command(kafka_commands, "stop", "stop the broker cleanly", kafka_stop)
    command(
        kafka_commands,
        "status",
        "is the broker running and answering? (exit 3 if not)",
        kafka_status,
    )

    postgres = commands.add_parser(
        "postgres",
        help="run the local PostgreSQL server (the postgres serving store)",
        description="Run the local PostgreSQL server (the postgres serving store).",
    )
    postgres_commands = postgres.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(
        postgres_commands,
        "start",
        "start the server (set up once: database, writer and reader roles) and wait for it",
        postgres_start,
    )
    command(postgres_commands, "stop", "stop the server (fast: ends open sessions)", postgres_stop)
    command(
        postgres_commands,
        "status",
        "is the server running and accepting connections? (exit 3 if not)",
        postgres_status,
    )

    command(
        commands,
        "status",
        "is every stream keeping up? rates, batches and lag behind Kafka (exit 3 if not)",
        pipeline_status,
    )

    topics = commands.add_parser(
        "topics", help="create and inspect topics", description="Create and inspect topics."
    )
    topic_commands = topics.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(
        topic_commands, "create", "create the topics declared in config (idempotent)", topics_create
    )
    command(topic_commands, "list", "list the topics on the cluster", topics_list)
    describe = command(
        topic_commands, "describe", "partitions, offsets and retention of topics", topics_describe
    )
    describe.add_argument("topics", nargs="*", metavar="TOPIC", help="topics (default: all)")

    jars = commands.add_parser(
        "jars", help="the JVM jars (Kafka broker, Spark connectors)", description="The JVM jars."
    )
    jar_commands = jars.add_subparsers(dest="action", metavar="ACTION", required=True)
    resolve = command(
        jar_commands, "resolve", "download the pinned jars from Maven Central (once)", jars_resolve
    )
    resolve.add_argument("--force", action="store_true", help="resolve again even if cached")
    path = command(jar_commands, "path", "print a resolved classpath", jars_path)
    path.add_argument("name", choices=["spark", "kafka-broker"])

    config = commands.add_parser(
        "config", help="inspect configuration", description="Inspect configuration."
    )
    config_commands = config.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(config_commands, "show", "print the merged, validated settings", config_show)
    command(config_commands, "check", "validate every shipped env", config_check)

    world = commands.add_parser(
        "world", help="the simulated retailer", description="The simulated retailer."
    )
    world_commands = world.add_subparsers(dest="action", metavar="ACTION", required=True)
    add_job(world_commands, by_name["init"])
    publish = command(
        commands, "produce", "publish generated events to Kafka (with ground truth)", produce
    )
    produce_events.add_flags(publish)
    add_job(commands, by_name["sample-lake"])

    quality = commands.add_parser(
        "quality", help="data quality of the silver tables", description="Data quality."
    )
    quality_commands = quality.add_subparsers(dest="action", metavar="ACTION", required=True)
    validate = command(
        quality_commands,
        "validate",
        "validate silver tables with Great Expectations (results and Data Docs under data/quality)",
        quality_validate,
    )
    validate.add_argument("--max-rows", type=int, default=100_000, help="sample size per table")

    run = commands.add_parser(
        "run", help="run a streaming job in this process", description="Run a streaming job."
    )
    add_common_flags(run, suppress_defaults=True)
    run_jobs = run.add_subparsers(dest="job", metavar="JOB", required=True)
    for job in all_jobs.STREAMING:
        add_job(run_jobs, job)

    sub = command(commands, "submit", "spark-submit a job with the resolved jars", submit)
    sub.add_argument("job", choices=sorted(all_jobs.by_submit_name()), help="the job")
    sub.add_argument("--master", help="Spark master URL (default: spark-submit's)")
    sub.add_argument("job_args", nargs=argparse.REMAINDER, help="the job's own flags")

    views = commands.add_parser(
        "views",
        help="the serving and gold views",
        description="The serving store's views (the API's) and the gold Delta views.",
    )
    view_commands = views.add_subparsers(dest="action", metavar="ACTION", required=True)
    rebuild = command(
        view_commands,
        "rebuild",
        "fold the event store into a fresh serving store (compare it with the live one)",
        views_rebuild,
    )
    rebuild.add_argument(
        "--into",
        type=Path,
        metavar="PATH",
        help="the SQLite file to rebuild into (default: the serving store's path + .rebuilt)",
    )
    rebuild_gold = command(
        view_commands,
        "rebuild-gold",
        "recompute a gold view from silver; with --as-of, a past state into its own table",
        views_rebuild_gold,
    )
    rebuild_gold.add_argument(
        "view",
        choices=["item_ratings", "sales_by_region", "trending_items", "inventory_positions"],
    )
    rebuild_gold.add_argument(
        "--as-of",
        type=iso_time,
        metavar="TIME",
        help="event time to stop at, ISO 8601 (UTC unless an offset is given)",
    )

    sql_cmd = command(
        commands, "sql", "run SQL over the lake's tables (bronze.events, silver.*, gold.*)", sql
    )
    sql_cmd.add_argument("statement", nargs="?", help='e.g. "SELECT * FROM gold.item_ratings"')
    sql_cmd.add_argument("--limit", type=int, default=50, help="rows to print at most")
    sql_cmd.add_argument("--tables", action="store_true", help="list the tables and their paths")

    for job in all_jobs.COMMANDS:
        if job.name not in placed:
            add_job(commands, job)

    sql_server.add_flags(
        command(
            commands, "sql-server",
            "serve the lake's tables over JDBC/ODBC (Spark's Thrift server) for BI tools",
            sql_server.command,
        )
    )  # fmt: skip

    train = commands.add_parser(
        "train",
        help="train a model and register it in MLflow",
        description="Train a model from the lake's history and register it in MLflow.",
    )
    add_common_flags(train, suppress_defaults=True)
    trainers = train.add_subparsers(dest="model", metavar="MODEL", required=True)
    for job in all_jobs.TRAINING:
        add_job(trainers, job)

    add_job(commands, by_name["retrain"])

    models = commands.add_parser(
        "models", help="the MLflow model registry", description="Registered models and champions."
    )
    model_commands = models.add_subparsers(dest="action", metavar="ACTION", required=True)
    command(
        model_commands,
        "list",
        "every registered version, its aliases and holdout metric",
        models_list,
    )
    promote = command(
        model_commands,
        "promote",
        "make a version the champion (the alias serving reads)",
        models_promote,
    )
    promote.add_argument("model", help="registered name, or `recommender` / `disruption`")
    promote.add_argument("version", help="the version number")
    rollback = command(
        model_commands,
        "rollback",
        "give the champion alias back to the previous champion",
        models_rollback,
    )
    rollback.add_argument("model", help="registered name, or `recommender` / `disruption`")

    serve_cmd = command(commands, "serve", "serve the query/command API and the dashboard", serve)
    serve_cmd.add_argument("--host", help="interface to listen on (default: serve.host)")
    serve_cmd.add_argument("--port", type=int, help="port (default: serve.port)")
    serve_cmd.add_argument(
        "--workers", type=_positive, default=1,
        help="processes serving the same port, e.g. one per core (default: 1)",
    )  # fmt: skip

    demo_cmd = command(
        commands,
        "demo",
        "the whole platform live: broker, events, bronze, silver, views, dashboard",
        demo,
    )
    demo_job.add_flags(demo_cmd)

    bench_cmd = command(
        commands,
        "bench",
        "run benchmarks against their baselines; figures to bench/results and BENCHMARKS.md",
        bench,
    )
    bench_cmd.add_argument(
        "names", nargs="*", metavar="NAME", help="benchmarks to run (default: all; --list)"
    )
    bench_cmd.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks they run, leaves BENCHMARKS.md"
    )
    bench_cmd.add_argument("--repetitions", type=int, help="timed rounds (default: each one's)")
    bench_cmd.add_argument("--warmup", type=int, help="untimed rounds first (default: each one's)")
    bench_cmd.add_argument("--list", action="store_true", help="list the benchmarks and stop")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return guarded(args.verbose, lambda: args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
