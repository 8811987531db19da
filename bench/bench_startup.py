"""Demo start-up: seconds from `retailstream demo` to each phase and to each view's first rows.

Runs the real command, `retailstream demo --rate R --duration D`, as a child
process on a fresh lake and a throwaway broker (free ports, data under a
temporary folder) and times, from just before the process is started:

- each phase line the demo prints (`[1/5]` API, `[2/5]` broker, `[3/5]` Spark and the
  serving query, `[4/5]` the world in the lake, `[5/5]` all queries running);
- the first answer of `GET /v1/health` (the API is up);
- per view, the first time the serving store the API reads holds rows of it once
  the API answers (polled read-only with sqlite3: what `GET /v1/items/{sku}`, `/v1/trending`
  ... would answer from that moment);
- the first non-empty `GET /v1/sales/regions` (sales visible to a client).

The bar (issue 5): the first view visible within 90 s of the command. The
baseline in the same run is what any Spark job pays before its first step: a
child process that imports the package and starts the same SparkSession.

    .venv/bin/python bench/bench_startup.py [--quick] [--repetitions N]

Full: 200 events/s, 2 repetitions of 150 s. `--quick`: 1 repetition of 10 s after the queries start.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from harness import PROJECT_HOME, Column, Plot, Table, parse_args, percentiles, publish_tables

from retailstream.kafka.broker import free_port

RATE = 200
STARTUP_PLOT = Plot(
    ("round",), ("spark_alone", "api_up", "first_view", "sales_visible"), "seconds from the command"
)
VIEWS = ("item_ratings", "sales_by_region", "trending_items", "inventory_positions")
PHASES = ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]")


def _get(url: str) -> Any | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):
        return None


def _views_with_rows(store: Path, views: tuple[str, ...]) -> list[str]:
    """The views of which the serving store holds at least one row (read-only)."""
    if not store.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as db:
            return [v for v in views if db.execute(f'SELECT 1 FROM "{v}" LIMIT 1').fetchone()]
    except sqlite3.Error:  # tables not created yet
        return []


def _watch_output(process: subprocess.Popen[str], t0: float, marks: dict[str, float]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        for phase in PHASES:
            if line.startswith(phase) and phase not in marks:
                marks[phase] = time.monotonic() - t0
        sys.stdout.write(f"  demo| {line}")


def one_start(duration_s: float, rate: float) -> dict[str, Any]:
    """Times of one demo start on a fresh lake (seconds from the command)."""
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as folder:
        tmp = Path(folder)
        api_port, broker_port, controller_port = free_port(), free_port(), free_port()
        overrides = {
            "lake.root": tmp / "lake",
            "spark.driver_log": tmp / "driver.log",
            "kafka.local_broker.data_dir": tmp / "kafka",
            "kafka.local_broker.port": broker_port,
            "kafka.local_broker.controller_port": controller_port,
            "serve.port": api_port,
        }
        command = [str(Path(sys.executable).parent / "retailstream"), "demo"]
        for key, value in overrides.items():
            command += ["--set", f"{key}={value}"]
        command += ["--rate", str(rate), "--duration", str(duration_s)]
        marks: dict[str, float] = {}
        t0 = time.monotonic()
        process = subprocess.Popen(
            command, cwd=PROJECT_HOME, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        reader = threading.Thread(target=_watch_output, args=(process, t0, marks), daemon=True)
        reader.start()
        base = f"http://127.0.0.1:{api_port}"
        views: dict[str, float] = {}
        store = tmp / "lake" / "_serving" / "views.db"
        while process.poll() is None:
            if _get(f"{base}/v1/health") is not None:
                marks.setdefault("api_up", time.monotonic() - t0)
            # A view is visible once the store holds its rows and the API answers.
            if "api_up" in marks:
                for view in _views_with_rows(store, VIEWS):
                    views.setdefault(view, time.monotonic() - t0)
            if "sales_visible" not in marks:
                sales = _get(f"{base}/v1/sales/regions")
                if sales and sales.get("regions"):
                    marks["sales_visible"] = time.monotonic() - t0
            time.sleep(0.5)
        reader.join(timeout=10)
        return {
            "broker": marks.get("[2/5]"),
            "serving_started": marks.get("[3/5]"),
            "world_written": marks.get("[4/5]"),
            "api_up": marks.get("api_up"),
            "queries_started": marks.get("[5/5]"),
            "first_view": min(views.values(), default=None),
            "first_view_name": min(views, key=views.__getitem__) if views else None,
            "sales_visible": marks.get("sales_visible"),
            "views": views,
            "exit_code": process.returncode,
        }


def spark_alone() -> float:
    """Seconds for a child process to import the package and start the dev SparkSession."""
    code = (
        "from retailstream.config import load_settings\n"
        "from retailstream.session import build_spark\n"
        "build_spark(load_settings('dev', ['spark.driver_log=/dev/null'])).stop()\n"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code], cwd=PROJECT_HOME, check=True)
    return time.monotonic() - started


def main() -> None:
    args = parse_args(__doc__)
    repetitions = args.repetitions or (1 if args.quick else 2)
    # Quick: `--duration` counts from the queries' start; a smoke test needs no view.
    duration = 10.0 if args.quick else 150.0
    runs = []
    for round_no in range(repetitions):
        print(f"round {round_no + 1}/{repetitions}: SparkSession alone ...", flush=True)
        alone = spark_alone()
        print(f"  {alone:.1f} s; the demo, {RATE} events/s for {duration:.0f} s ...", flush=True)
        runs.append({"round": round_no + 1, "spark_alone": alone, **one_start(duration, RATE)})
    columns = [
        Column("round", "run"),
        Column("spark_alone", "SparkSession alone", ".1f"),
        Column("broker", "broker", ".1f"),
        Column("api_up", "API up", ".1f"),
        Column("serving_started", "Spark + serving query", ".1f"),
        Column("world_written", "world in the lake", ".1f"),
        Column("queries_started", "all queries started", ".1f"),
        Column("first_view", "first view", ".1f"),
        Column("first_view_name", "which"),
        Column("sales_visible", "sales in the API", ".1f"),
    ]
    firsts = [r["first_view"] for r in runs if r["first_view"] is not None]
    spread = percentiles(firsts, (50,))
    publish_tables(
        "startup",
        "Demo start-up",
        f"Seconds from `retailstream demo --rate {RATE}` (fresh lake, throwaway broker) to each "
        "phase and to the first view's rows in the API, against a bare SparkSession start in "
        "the same run.",
        [Table("", columns, runs, STARTUP_PLOT)],
        params={"rate": RATE, "duration_s": duration, "repetitions": repetitions},
        quick=args.quick,
        notes=[f"first view: median {spread['p50']:.1f} s, worst {spread['max']:.1f} s"]
        if firsts
        else ["no view committed during the run"],
    )


if __name__ == "__main__":
    main()
