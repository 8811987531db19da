"""World init: the retailer's reference data -> Delta tables.

Reads: nothing but `--seed`/`--scale` (defaults from `world.*` in config).
Writes: `<lake>/reference/<table>` for products, stores, distribution_centres,
customers, carriers, routes and initial_stock (overwritten), and
`<lake>/reference/_world.json`, the seed and scale that `produce` rebuilds the
same world from. The same seed and scale always give the same tables.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pandas as pd
from pyspark.sql import SparkSession

from retailstream.config import Settings
from retailstream.io.datasets import reference_table, world_spec_path
from retailstream.io.delta import write_table
from retailstream.jobs.spec import Job
from retailstream.world import Scale, World, build_world


def write_world(
    spark: SparkSession, settings: Settings, seed: int, scale: str, world: World | None = None
) -> dict[str, int]:
    """Write every reference table, then the world's spec; return the row count of
    each table. `world`: the world of `seed` and `scale`, when the caller has it."""
    tables = (world or build_world(seed, scale)).tables()  # type: ignore[arg-type]
    write_tables(spark, settings, tables)
    return write_spec(settings, seed, scale, tables)


def write_tables(
    spark: SparkSession, settings: Settings, tables: Mapping[str, pd.DataFrame]
) -> None:
    """Overwrite the reference tables with `tables` (a world's `tables()`)."""

    def write(name: str) -> None:
        write_table(
            spark.createDataFrame(tables[name]), reference_table(settings, name), "overwrite"
        )

    # Each small Delta write is mostly fixed latency (planning, commit); the
    # tables are independent, so writing them concurrently saves most of it.
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, tables))


def write_spec(
    settings: Settings, seed: int, scale: str, tables: Mapping[str, pd.DataFrame]
) -> dict[str, int]:
    """Write `_world.json`, what `produce` rebuilds the world from; return the row
    count of each table."""
    counts = {name: len(frame) for name, frame in tables.items()}
    spec = world_spec_path(settings)
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps({"seed": seed, "scale": scale, "tables": counts}, indent=2) + "\n")
    return counts


@dataclass(frozen=True)
class WorldInit:
    """What `world init` runs with: the settings, and the seed and scale of the world
    (`--seed`/`--scale`, else `world.*` in config)."""

    settings: Settings
    seed: int
    scale: Scale


def run(spark: SparkSession, cfg: WorldInit) -> int:
    settings, seed, scale = cfg.settings, cfg.seed, cfg.scale
    started = time.monotonic()
    counts = write_world(spark, settings, seed, scale)
    print(f"world (seed {seed}, scale {scale}) written in {time.monotonic() - started:.1f}s:")
    for name, rows in counts.items():
        print(f"  {name:<22} {rows:>9} rows  {reference_table(settings, name)}")
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="world seed (default: world.seed)")
    parser.add_argument("--scale", choices=["small", "demo", "large"], help="world size")


def configure(settings: Settings, args: argparse.Namespace) -> WorldInit:
    """The flags' seed and scale, each defaulting to the settings' `world.*`."""
    seed = settings.world.seed if args.seed is None else args.seed
    return WorldInit(settings, seed=seed, scale=args.scale or settings.world.scale)


JOB = Job(
    "init", "write the reference data as Delta tables", "command", "init_world",
    configure, run, add_flags,
)  # fmt: skip
main = JOB.main
