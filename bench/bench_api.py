"""API serving speed as deployed: `retailstream serve` in processes of its own, loaded by wrk.

`GET /v1/items/{sku}` on random known skus of a serving store holding every
product's ratings document (10 newest ratings each, folded with the serving
path's own fold), with the pipeline stopped, for each store: SQLite, and
PostgreSQL (a server of its own on the same 2 cores, read with the API's
read-only role). Per store and level of closed-loop clients (1, 8, 32
connections, each sending its next request when the answer arrives):

- store in-process, the baseline: the route's store look-ups (product, then
  ratings document) from as many threads of one process, no HTTP;
- the API with 1 and 2 worker processes (`retailstream serve --workers N`),
  loaded by wrk (C, from Debian's `wrk`) on the same 2 cores: a Python client
  would take the cores the server needs and measure itself.

Rounds alternate the order of the paths. Reported: the median requests/s over
the rounds and their range, and wrk's latency percentiles (p50, p90, p99) of
the round with the median rate, with the worst p99 of all rounds.

    .venv/bin/python bench/bench_api.py [--quick] [--repetitions N]
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from bench_serving import STORE, closed_loop
from harness import PROJECT_HOME, Column, Table, parse_args, publish_tables, workspace
from plots import Plot

from retailstream.config import Settings, StoreKind
from retailstream.jobs.serving_views import catalogue_of, world_rows
from retailstream.kafka.broker import free_port
from retailstream.postgres_server import reader_dsn, throwaway_server
from retailstream.views.folds import fold_item_ratings
from retailstream.views.store import SqliteStore
from retailstream.views.stores import serving_store
from retailstream.world import Scale, build_world

SCALE: Scale = "small"
RATINGS_PER_ITEM = 10


@dataclass(frozen=True)
class Plan:
    levels: tuple[int, ...]
    workers: tuple[int, ...]
    seconds: float
    warmup_s: float
    repetitions: int
    demo_rate: float  # events/s of the demo the last part runs beside; 0: no such part
    demo_clients: int = 32
    stores: tuple[StoreKind, ...] = ("sqlite", "postgres")


FULL = Plan((1, 8, 32), (2, 3), seconds=10.0, warmup_s=2.0, repetitions=3, demo_rate=1000)
QUICK = Plan((1, 8), (2,), seconds=2.0, warmup_s=1.0, repetitions=1, demo_rate=0)
# How long the demo may take to start its queries (Spark, the broker, the world).
DEMO_START_S = 300
WRK_SCRIPT = """
local skus = {%s}
math.randomseed(%d)
request = function()
  return wrk.format("GET", "/v1/items/" .. skus[math.random(#skus)])
end
"""


def log(message: str) -> None:
    print(message, flush=True)


def fill_store(settings: Settings, kind: StoreKind) -> list[str]:
    """The world's catalogue and a ratings document per product; return the skus."""
    rows = world_rows(build_world(settings.world.seed, SCALE).tables())
    store = serving_store(settings, kind)
    store.replace("products", rows["products"])
    catalogue = catalogue_of(rows)
    rng = random.Random(7)
    docs = []
    for n, product in enumerate(rows["products"]):
        facts = [
            {
                "sku": product["sku"], "event_id": f"{n:06d}{k:04d}" + "0" * 22,
                "customer_id": f"C-{rng.randrange(10**7):07d}", "stars": rng.randint(1, 5),
                "event_time": f"2026-12-0{1 + k % 7}T1{k % 10}:00:00.000000",
            }
            for k in range(RATINGS_PER_ITEM)
        ]  # fmt: skip
        docs.append(fold_item_ratings(None, facts, catalogue, settings.views))
    with store.batch() as tx:
        tx.put("item_ratings", docs)
    return [p["sku"] for p in rows["products"]]


@contextmanager
def api_server(
    settings: Settings, workers: int, log_path: Path, kind: StoreKind = "sqlite"
) -> Iterator[str]:
    """`retailstream serve --workers N` reading the `kind` store, on a free port, stopped
    (SIGINT) on the way out."""
    port = free_port()
    server = settings.postgres.local_server
    command = [
        str(Path(sys.executable).parent / "retailstream"), "--env", settings.env, "serve",
        "--workers", str(workers), "--port", str(port),
        "--set", f"views.sqlite_path={settings.views.store_path}",
        "--set", f"kafka.bootstrap_servers={settings.kafka.bootstrap}",
        "--set", f"serve.store={kind}",
        "--set", f"postgres.database={settings.postgres.database}",
        "--set", f"postgres.local_server.port={server.port}",
        "--set", f"postgres.local_server.data_dir={server.data_dir}",
    ]  # fmt: skip
    with log_path.open("ab") as out:
        process = subprocess.Popen(command, cwd=PROJECT_HOME, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(text: str) -> dict[str, Any]:
    """requests/s, latency percentiles (ms) and errors from `wrk --latency` output (pure)."""
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    found = {
        f"p{pct}_ms": float(value) * _UNITS[unit]
        for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
    }
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "requests_per_s": rate,
        **found,
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def _duration(seconds: float) -> str:
    """wrk's duration: whole seconds (it reads no fractions)."""
    return f"{max(1, round(seconds))}s"


def wrk_round(url: str, script: Path, clients: int, plan: Plan) -> dict[str, Any]:
    """One round of `clients` connections: a warm-up run, then the measured one."""
    threads = str(min(2, clients))
    base = ["wrk", "-t", threads, "-c", str(clients), "--latency", "-s", str(script), url]
    subprocess.run([*base[:5], "-d", _duration(plan.warmup_s), *base[5:]], capture_output=True)
    done = subprocess.run(
        [*base[:5], "-d", _duration(plan.seconds), *base[5:]],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_wrk(done.stdout)


def store_round(
    pool: ProcessPoolExecutor, store: str, skus: list[str], clients: int, plan: Plan
) -> dict[str, Any]:
    """The baseline's round: `store` is the SQLite file, or PostgreSQL's reader DSN."""
    run = pool.submit(
        closed_loop, STORE, store, skus, clients, plan.seconds, plan.warmup_s
    ).result()
    ms = sorted(1000 * x for x in run["latencies"])

    def at(p: float) -> float:
        return ms[min(len(ms) - 1, int(p / 100 * len(ms)))]

    return {
        "requests_per_s": run["requests"] / run["seconds"],
        "p50_ms": at(50), "p90_ms": at(90), "p99_ms": at(99),
        "non_2xx": sum(n for s, n in run["statuses"].items() if s != 200), "socket_errors": 0,
    }  # fmt: skip


def summarise(rounds: dict[tuple[int, str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for (clients, store, path), runs in rounds.items():
        rates = [r["requests_per_s"] for r in runs]
        middle = sorted(runs, key=lambda r: r["requests_per_s"])[len(runs) // 2]
        rows.append(
            {
                "clients": clients,
                "store": store,
                "path": path,
                "requests_per_s": statistics.median(rates),
                "range": f"{min(rates):,.0f}–{max(rates):,.0f}",
                "requests_per_s_runs": rates,
                "p50_ms": middle.get("p50_ms"),
                "p90_ms": middle.get("p90_ms"),
                "p99_ms": middle.get("p99_ms"),
                "worst_p99_ms": max(r.get("p99_ms") or 0.0 for r in runs),
                "errors": sum(r["non_2xx"] + r["socket_errors"] for r in runs),
            }
        )
    rows.sort(key=lambda r: (r["clients"], r["store"], r["path"] != STORE, r["path"]))
    base = {(r["clients"], r["store"]): r["requests_per_s"] for r in rows if r["path"] == STORE}
    # The store's baseline was measured with the pipeline stopped, also for the rows
    # measured beside the demo.
    for row in rows:
        row["vs_store"] = (
            "baseline"
            if row["path"] == STORE
            else f"{row['requests_per_s'] / base[row['clients'], row['store']]:.3g}×"
        )
    return rows


@contextmanager
def running_demo(tmp: Path, rate: float) -> Iterator[tuple[Path, str]]:
    """`retailstream demo --rate R` with everything under `tmp` (its own broker, lake and
    API port), once its queries run; yields its serving store and broker address."""
    broker_port, api_port = free_port(), free_port()
    flags = [
        "--set", f"lake.root={tmp / 'lake'}",
        "--set", f"kafka.local_broker.data_dir={tmp / 'kafka'}",
        "--set", f"kafka.local_broker.port={broker_port}",
        "--set", f"kafka.local_broker.controller_port={free_port()}",
        "--set", f"serve.port={api_port}",
        "--set", f"spark.driver_log={tmp / 'driver.log'}",
    ]  # fmt: skip
    command = [str(Path(sys.executable).parent / "retailstream"), "demo", "--rate", f"{rate:g}"]
    demo = subprocess.Popen(
        [*command, *flags], cwd=PROJECT_HOME, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + DEMO_START_S
        assert demo.stdout is not None
        for line in demo.stdout:
            log(f"  demo: {line.rstrip()}")
            if line.startswith("[5/5]"):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the demo did not start its queries in time")
        else:
            raise RuntimeError("the demo stopped while starting")
        yield tmp / "lake" / "_serving" / "views.db", f"127.0.0.1:{broker_port}"
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # Ctrl-C, as in a terminal
        try:
            demo.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)


def beside_demo(
    tmp: Path, settings: Settings, plan: Plan, repetitions: int
) -> list[dict[str, Any]]:
    """The API with 2 workers, at `plan.demo_clients` clients, while the demo streams."""
    rounds = []
    with running_demo(tmp / "demo", plan.demo_rate) as (store_path, bootstrap):
        skus = [p["sku"] for p in SqliteStore(store_path).rows("products")]
        script = tmp / "demo-items.lua"
        script.write_text(WRK_SCRIPT % (", ".join(f'"{s}"' for s in skus), 11))
        demo_settings = settings.model_copy(
            update={
                "views": settings.views.model_copy(update={"sqlite_path": store_path}),
                "kafka": settings.kafka.model_copy(update={"bootstrap_servers": bootstrap}),
            }
        )
        with api_server(demo_settings, 2, tmp / "serve-demo.log") as url:
            for rep in range(repetitions):
                result = wrk_round(url, script, plan.demo_clients, plan)
                rounds.append(result)
                log(f"  rep {rep + 1}  beside the demo at {plan.demo_rate:,.0f} events/s "
                    f"{result['requests_per_s']:>8,.0f} req/s  p99 {result.get('p99_ms', 0):6.2f} ms")  # fmt: skip
    return rounds


def api_path(workers: int) -> str:
    return f"HTTP API, {workers} worker{'s' if workers > 1 else ''} (wrk)"


def main() -> int:
    args = parse_args(__doc__)
    plan = QUICK if args.quick else FULL
    repetitions = args.repetitions or plan.repetitions
    if shutil.which("wrk") is None:
        raise SystemExit("bench_api needs wrk (Debian's `wrk`; `make setup` installs it)")
    began = time.perf_counter()
    with ExitStack() as stack:
        tmp, settings = stack.enter_context(workspace("api"))
        if "postgres" in plan.stores:
            server = stack.enter_context(throwaway_server("bench"))
            postgres = settings.postgres.model_copy(
                update={"local_server": server.settings, "database": server.database}
            )
            settings = settings.model_copy(update={"postgres": postgres})
        for kind in plan.stores:
            skus = fill_store(settings, kind)
        targets = {
            "sqlite": str(settings.views.store_path),
            "postgres": "postgres" in plan.stores and reader_dsn(settings),
        }
        script = tmp / "items.lua"
        quoted = ", ".join(f'"{s}"' for s in skus)
        script.write_text(WRK_SCRIPT % (quoted, 7))
        log(f"{len(skus)} skus rated; levels {plan.levels}, workers {plan.workers}, "
            f"{plan.seconds:g} s per round after {plan.warmup_s:g} s, {repetitions} round(s)")  # fmt: skip
        pool = stack.enter_context(
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        )
        rounds: dict[tuple[int, str, str], list[dict[str, Any]]] = {}
        for rep in range(repetitions):
            for kind in plan.stores if rep % 2 == 0 else plan.stores[::-1]:
                for workers in plan.workers if rep % 2 == 0 else plan.workers[::-1]:
                    with api_server(settings, workers, tmp / "serve.log", kind) as url:
                        for clients in plan.levels:
                            result = wrk_round(url, script, clients, plan)
                            path = api_path(workers)
                            rounds.setdefault((clients, kind, path), []).append(result)
                            log(f"  rep {rep + 1}  {kind:<8} {path:<28} {clients:>3} clients "
                                f"{result['requests_per_s']:>8,.0f} req/s  p99 {result.get('p99_ms', 0):6.2f} ms")  # fmt: skip
                for clients in plan.levels:
                    result = store_round(pool, str(targets[kind]), skus, clients, plan)
                    rounds.setdefault((clients, kind, STORE), []).append(result)
                    log(f"  rep {rep + 1}  {kind:<8} {STORE:<28} {clients:>3} clients "
                        f"{result['requests_per_s']:>8,.0f} req/s  p99 {result['p99_ms']:6.2f} ms")  # fmt: skip
        if plan.demo_rate:
            log(f"the API beside `retailstream demo --rate {plan.demo_rate:g}` ...")
            demo_runs = beside_demo(tmp, settings, plan, repetitions)
            rounds[(plan.demo_clients, "sqlite", f"{api_path(2)}, beside the demo")] = demo_runs
    rows = summarise(rounds)
    table = Table(
        "`GET /v1/items/{sku}`, closed loop, pipeline stopped (but in the row beside the "
        "demo): requests/s (median of the rounds, and their range), latency of the median "
        "round, worst p99 of all rounds",
        [
            Column("clients", "clients"),
            Column("store", "store"),
            Column("path", "path"),
            Column("requests_per_s", "requests/s", ",.0f"),
            Column("range", "range"),
            Column("p50_ms", "p50 ms", ".2f"),
            Column("p90_ms", "p90 ms", ".2f"),
            Column("p99_ms", "p99 ms", ".2f"),
            Column("worst_p99_ms", "worst p99 ms", ".2f"),
            Column("errors", "errors"),
            Column("vs_store", "vs store"),
        ],
        rows,
        Plot(
            ("clients", "store", "path"), ("requests_per_s",), "requests per second (log)", log=True
        ),
    )
    elapsed = time.perf_counter() - began
    publish_tables(
        "api",
        "API serving speed as deployed (`bench/bench_api.py`)",
        (__doc__ or "").split("\n\n")[0].strip()
        + f" Closed-loop clients {', '.join(map(str, plan.levels))}; {plan.seconds:g} s rounds,"
        f" {repetitions} per level and path; the store in-process as the baseline.",
        [table],
        {
            "levels": plan.levels,
            "workers": plan.workers,
            "stores": plan.stores,
            "seconds": plan.seconds,
            "repetitions": repetitions,
            "skus": len(skus),
            "world": SCALE,
        },  # fmt: skip
        args.quick,
        notes=[f"Whole run {elapsed / 60:.1f} min."],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
