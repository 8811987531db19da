"""The lake's datasets, declared once: where each Delta table and each query's
checkpoint lives under the lake root.

Jobs name a dataset here (`silver_table(settings, "orders")`) and never build a
lake path themselves, nor import another job to learn one; whether a table is
there yet is `require_table`'s question, not a look at `_delta_log/`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from retailstream.config import Settings
from retailstream.errors import UserError
from retailstream.io.lake_names import has_commits

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from retailstream.world import World

# The event store: every Kafka record once (ingest appends, nothing rewrites it) and
# the hash chain of its batches (`io/event_chain.py`).
BRONZE = "bronze_events"
CHAIN = "bronze_chain"
# refine's rows that failed their expectations (with reasons), and its per-batch counts.
QUARANTINE = "quarantine"
QUALITY_METRICS = "quality_metrics"
# The simulated retailer's reference tables (`world init`), and its spec file beside them.
REFERENCE = "reference"
REFERENCE_TABLES = ("products", "stores", "customers", "distribution_centres", "carriers", "routes")
WORLD_SPEC = "_world.json"
# The streaming queries, by name (what progress reports and `status` show). Each keeps
# its progress in <lake>/_checkpoints/<its checkpoint>, named as the query unless
# noted: the gold checkpoint is what `audit` reads.
INGEST_QUERY = "ingest_events"
REFINE_QUERY = "refine_events"
ENRICH_QUERIES = tuple(
    f"enrich_{table}" for table in ("clickstream", "orders", "order_lines", "shipments")
)
GOLD_QUERY = "gold_views"
SERVING_QUERY = "serving_views"
# Its first checkpoint kept deduplication state, which Spark will not resume without.
SERVING_CHECKPOINT = "serving_views_v2"
SERVING_POSTGRES_QUERY = "serving_views_postgres"
SERVING_REALTIME_QUERY = "serving_views_realtime"
SERVING_REALTIME_CHECKPOINT = "serving_views_rt"
SCORE_QUERY = "score_shipments"
# Tables of the layers, one folder per table.
SILVER, GOLD, GOLD_AS_OF = "silver", "gold", "gold_as_of"


def bronze_table(settings: Settings) -> Path:
    return settings.lake.table(BRONZE)


def chain_table(settings: Settings) -> Path:
    return settings.lake.table(CHAIN)


def quarantine_table(settings: Settings) -> Path:
    return settings.lake.table(QUARANTINE)


def quality_metrics_table(settings: Settings) -> Path:
    return settings.lake.table(QUALITY_METRICS)


def silver_table(settings: Settings, table: str) -> Path:
    """A silver table: `orders`, `ratings`, ... and the enriched ones (`orders_enriched`)."""
    return settings.lake.table(f"{SILVER}/{table}")


def gold_table(settings: Settings, view: str) -> Path:
    """A gold table: the views (`item_ratings`, ...), `recommendations`,
    `popular_by_region`, `disruption_alerts`."""
    return settings.lake.table(f"{GOLD}/{view}")


def gold_as_of_table(settings: Settings, view: str, as_of: datetime) -> Path:
    """A gold view recomputed as of a past time (`views rebuild-gold --as-of`)."""
    return settings.lake.table(f"{GOLD_AS_OF}/{view}/{as_of.strftime('%Y%m%dT%H%M%SZ')}")


def reference_table(settings: Settings, name: str) -> Path:
    return settings.lake.table(f"{REFERENCE}/{name}")


def world_spec_path(settings: Settings) -> Path:
    return settings.lake.table(REFERENCE) / WORLD_SPEC


def world_spec(settings: Settings) -> dict:
    """The seed and scale of the world that `world init` wrote."""
    path = world_spec_path(settings)
    if not path.exists():
        raise UserError(f"no world in {path.parent}: run `retailstream world init` first")
    spec = json.loads(path.read_text())
    return {"seed": int(spec["seed"]), "scale": spec["scale"]}


def load_world(settings: Settings) -> World:
    """Rebuild the world that `world init` wrote (same seed and scale)."""
    from retailstream.world import build_world

    spec = world_spec(settings)
    return build_world(spec["seed"], spec["scale"])


def checkpoint(settings: Settings, query: str) -> Path:
    """The checkpoint of the streaming query named `query` (one folder per query)."""
    return settings.lake.checkpoint(query)


def checkpoints(settings: Settings) -> Path:
    """The folder holding every query's checkpoint."""
    return settings.lake.checkpoints


def require_table(path: Path, missing: str) -> Path:
    """`path`, once its Delta table has a commit; else a user error saying `missing`
    (what to run first)."""
    if not has_commits(path):
        raise UserError(missing)
    return path


def load_references(
    spark: SparkSession, settings: Settings, tables: Sequence[str] = REFERENCE_TABLES
) -> dict[str, DataFrame]:
    """The reference `tables` a job checks or joins against (small, static: cached)."""
    from retailstream.io.delta import read_table

    missing = [t for t in tables if not has_commits(reference_table(settings, t))]
    if missing:
        raise UserError(
            f"reference tables missing ({', '.join(missing)}): run `retailstream world init` first"
        )
    # Opening a Delta table is mostly fixed latency (its log, its schema): side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        frames = pool.map(lambda t: read_table(spark, reference_table(settings, t)).cache(), tables)
        return dict(zip(tables, frames, strict=True))
