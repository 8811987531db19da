"""`retailstream sql-server`: Spark's Thrift JDBC/ODBC server over the lake's tables.

BI tools, `beeline` and any HiveServer2 JDBC or ODBC driver connect to
`jdbc:hive2://HOST:PORT/default` and query the names `retailstream sql` uses
(`gold.item_ratings`, `silver.orders`, ...). The server runs inside this
process's Spark application; each connection gets its own SQL session over the
shared catalog. Tables the streams create after the start are registered on the
next refresh.

There is no authentication: the server binds to loopback unless told otherwise.
"""

from __future__ import annotations

import argparse
import signal
import time
from types import FrameType
from typing import Any

from pyspark.sql import SparkSession

from retailstream import catalog
from retailstream.config import Settings, load_settings
from retailstream.errors import UserError
from retailstream.jars import classpath
from retailstream.kafka.broker import port_in_use

DEFAULT_PORT = 10000
SERVER_CLASS = "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2"


def with_jars_on_driver_class_path(settings: Settings) -> Settings:
    """The same settings, with the Spark jars (Delta) on the driver's own class path.

    A JDBC session is opened on a Thrift worker thread whose class loader does
    not see jars added through `spark.jars`; without this, every connection fails
    with ClassNotFoundException: DeltaCatalog. (Under spark-submit, pass the jars
    with --driver-class-path as well as --jars.)
    """
    jars = ":".join(str(jar) for jar in classpath(settings.home, "spark"))
    conf = {**settings.spark.conf, "spark.driver.extraClassPath": jars}
    return settings.model_copy(update={"spark": settings.spark.model_copy(update={"conf": conf})})


def start(spark: SparkSession, host: str, port: int) -> Any:
    """Start the Thrift server on host:port in this Spark application; returns its handle."""
    if port_in_use(host, port):
        raise UserError(f"port {port} on {host} is in use: choose another with --port")
    # The server reads its HiveServer2 settings from the session's Hadoop
    # configuration, which includes the session's SQL settings.
    spark.conf.set("hive.server2.thrift.port", str(port))
    spark.conf.set("hive.server2.thrift.bind.host", host)
    servers = spark._jvm.org.apache.spark.sql.hive.thriftserver.HiveThriftServer2  # type: ignore[union-attr]
    server = servers.startWithSparkSession(spark._jsparkSession, False)
    deadline = time.monotonic() + 60
    while not port_in_use(host, port):
        if time.monotonic() > deadline:
            server.stop()
            raise UserError(f"the JDBC server did not listen on {host}:{port} within 60 s")
        time.sleep(0.2)
    return server


def register_new(spark: SparkSession, settings: Settings, known: set[str]) -> list[str]:
    """Register the lake tables not in `known` yet (and add them to it); returns their names."""
    new = {name: path for name, path in catalog.lake_tables(settings).items() if name not in known}
    catalog.register_tables(spark, new)
    known.update(new)
    return sorted(new)


def serve(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    """Run the server until Ctrl-C or SIGTERM (or for `args.duration` seconds)."""
    known = set(catalog.register(spark, settings))
    server = start(spark, args.host, args.port)
    url = f"jdbc:hive2://{args.host}:{args.port}/default"
    print(
        f"JDBC/ODBC server (HiveServer2 protocol) at {url} over {len(known)} tables of "
        f"{settings.lake.root}\n  try: beeline -u {url} -e 'SHOW TABLES IN gold'\nCtrl-C stops",
        flush=True,
    )

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(args.refresh)
            for name in register_new(spark, settings, known):
                print(f"new table: {name}", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    print("JDBC server stopped", flush=True)
    return 0


def command(args: argparse.Namespace) -> int:
    """`retailstream sql-server [--host H] [--port P] [--refresh S] [--duration S]`."""
    from retailstream.session import build_spark

    if args.refresh <= 0:
        raise UserError("--refresh must be a positive number of seconds")
    settings = with_jars_on_driver_class_path(load_settings(args.env, args.overrides))
    return serve(build_spark(settings), settings, args)


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    parser.add_argument(
        "--refresh", type=float, default=10.0, help="seconds between looks for new lake tables"
    )
    parser.add_argument(
        "--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)"
    )
