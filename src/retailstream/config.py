"""Layered configuration, validated once into frozen settings.

Layers, later ones winning: `conf/base/*.yml` < `conf/<env>/*.yml` <
`conf/local/*.yml` (git-ignored) < environment variables < `--set key=value`.

- Each YAML file holds a mapping of top-level sections (`kafka:`, `spark:`...);
  files of one layer are read in name order and deep-merged.
- An environment variable `RETAILSTREAM_<SECTION>__<KEY>...` sets a key, with
  `__` between levels: `RETAILSTREAM_KAFKA__BOOTSTRAP_SERVERS=host:9092`.
  (`RETAILSTREAM_HOME` and `RETAILSTREAM_ENV` carry no `__` and are not keys.)
- `--set a.b.c=value` sets a key; a segment holding dots is quoted:
  `--set 'kafka.topics."shop.orders".partitions=6'`.
Values from the environment and `--set` are parsed as YAML scalars.

Unknown keys and wrong types are rejected with a message naming the key and
the layer (file, variable or flag) that set it. Relative paths are resolved
against the project home, the folder that holds `conf/`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from retailstream.errors import ConfigError

ENV_PREFIX = "RETAILSTREAM_"
DEFAULT_ENV = "dev"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


_INTERVAL = re.compile(r"\d+ (millisecond|second|minute|hour|day)s?")


def _spark_interval(value: str) -> str:
    """A duration as Spark's triggers, watermarks and windows take it ("5 seconds"),
    checked here so that a typo fails at load time, not inside a running query."""
    if not _INTERVAL.fullmatch(value.strip()):
        raise ValueError(
            f"{value!r} is not an interval: a number and a unit, such as '5 seconds' or "
            "'1 minute' (units: millisecond, second, minute, hour, day)"
        )
    return value.strip()


Interval = Annotated[str, AfterValidator(_spark_interval)]

_UNIT_MS = {
    "millisecond": 1,
    "second": 1_000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
}


_SIZE = re.compile(r"\d+[kmgt]?", re.IGNORECASE)


def _jvm_size(value: str) -> str:
    """A JVM memory size as Spark takes it ("2g", "512m"), checked at load time: a
    typo would otherwise surface as a JVM that does not start."""
    if not _SIZE.fullmatch(value.strip()):
        raise ValueError(
            f"{value!r} is not a memory size: a whole number with an optional unit k, m, g "
            "or t, such as '2g' or '512m'"
        )
    return value.strip()


# A bare number of bytes may come from YAML or --set as an int.
Size = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int) and not isinstance(v, bool) else v),
    AfterValidator(_jvm_size),
]


def interval_ms(value: str) -> int:
    """An `Interval` ("5 seconds") in milliseconds."""
    count, unit = _spark_interval(value).split()
    return int(count) * _UNIT_MS[unit.rstrip("s")]


def _local_lake(value: object) -> object:
    """A lake root given as a path or as a `file://` URI (percent-escapes decoded, so
    `file:///data/my%20lake` is the folder `/data/my lake`). Other schemes are refused
    here, in one line, rather than deep inside a job: the serving store, the health
    reports and the generator's state are still local files beside the tables."""
    if not isinstance(value, str) or "://" not in value:
        return value
    parsed = urlsplit(value)
    if parsed.scheme != "file":
        raise ValueError(
            f"{value!r}: only a local lake is supported so far (a path or a file:// URI), "
            f"not {parsed.scheme}://"
        )
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(f"{value!r}: a file:// URI names no host (file:///path)")
    return Path(unquote(parsed.path))


class LakeSettings(_Frozen):
    """Where the Delta tables and every query's checkpoint live."""

    # A path, or a file:// URI.
    root: Annotated[Path, BeforeValidator(_local_lake)] = Path("data/lake")
    # How far back Delta time travel must keep working on every lake table:
    # `retailstream maintain` never vacuums files a read this recent could need.
    time_travel_hours: float = Field(168.0, ge=0)

    def table(self, name: str) -> Path:
        return self.root / name

    @property
    def checkpoints(self) -> Path:
        """The folder holding every streaming query's checkpoint."""
        return self.root / "_checkpoints"

    def checkpoint(self, query: str) -> Path:
        return self.checkpoints / query


class SparkSettings(_Frozen):
    # local[16]: task slots for the serving path's real-time mode (conf/base/spark.yml).
    master: str = "local[16]"
    app_name: str = "retailstream"
    shuffle_partitions: int = Field(4, ge=1)
    driver_memory: Size = "2g"
    ui_enabled: bool = False
    log_level: str = "ERROR"
    # The driver JVM's own console output (JVM warnings, Spark start-up notes)
    # goes to this file so that a terminal shows only retailstream's messages.
    # Empty: leave it on the console.
    driver_log: Path | None = Path("data/logs/spark-driver.log")
    # Any other Spark setting, passed through as is (`spark.sql.*`, ...).
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        levels = {"ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "TRACE"}
        if value.upper() not in levels:
            raise ValueError(f"must be one of {sorted(levels)}")
        return value.upper()


class LocalBrokerSettings(_Frozen):
    """The Kafka broker that `retailstream kafka start` runs on this machine."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(9092, ge=1, le=65535)
    controller_port: int = Field(9093, ge=1, le=65535)
    data_dir: Path = Path("data/kafka")
    heap: str = "512m"
    start_timeout_s: float = Field(90.0, gt=0)
    # Largest record the broker accepts; bronze stores values of several MB.
    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)


class TopicSettings(_Frozen):
    partitions: int = Field(3, ge=1)
    # -1 keeps records forever: these topics are the event store's source.
    retention_ms: int = Field(-1, ge=-1)
    replication_factor: int = Field(1, ge=1)


class KafkaSettings(_Frozen):
    # Empty means the local broker (host:port above); set it to use your own cluster.
    bootstrap_servers: str = ""
    local_broker: LocalBrokerSettings = Field(default_factory=LocalBrokerSettings)
    topics: dict[str, TopicSettings] = Field(default_factory=dict)
    # Spark's Kafka source: records per micro-batch at most (None: no cap).
    max_offsets_per_trigger: int | None = Field(None, ge=1)
    # Extra options of Spark's Kafka source, e.g. {"kafka.fetch.max.wait.ms": "50"}.
    source_options: dict[str, str] = Field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        if self.bootstrap_servers:
            return self.bootstrap_servers
        return f"{self.local_broker.host}:{self.local_broker.port}"


class IngestSettings(_Frozen):
    """Kafka -> bronze: how the ingest query runs and what it may tolerate."""

    trigger_interval: Interval = "2 seconds"
    # Skip records that topic retention deleted before they were ingested
    # (reported, never silent). False stops ingest with the exact offsets.
    allow_data_loss: bool = False
    # After a failure (a broker gone away), restart from the checkpoint this often at most.
    max_restarts: int = Field(30, ge=0)
    restart_backoff_s: float = Field(5.0, ge=0)


class RefineSettings(_Frozen):
    """Bronze -> silver: parsing, expectations, deduplication, quarantine."""

    trigger_interval: Interval = "5 seconds"
    # How late an event may arrive and still be deduplicated against earlier
    # copies; bounds the state store. Events later than this are counted as
    # dropped by the watermark (never silently).
    watermark_delay: Interval = "1 hour"
    # Where the expectation suites live, relative to the project folder.
    expectations_dir: Path = Path("conf/expectations")
    tables: tuple[str, ...] = (
        "clickstream", "orders", "ratings", "shipments", "weather", "world_events",
    )  # fmt: skip


class EnrichSettings(_Frozen):
    """Silver -> enriched silver: joins with reference data, weather and world events."""

    trigger_interval: Interval = "5 seconds"


# The kinds of serving store: an embedded SQLite file, or a PostgreSQL database.
StoreKind = Literal["sqlite", "postgres"]


class ViewsSettings(_Frozen):
    """Silver -> gold: the materialized views and the serving store they are upserted into."""

    trigger_interval: Interval = "30 seconds"
    views: tuple[str, ...] = (
        "item_ratings", "sales_by_region", "trending_items", "inventory_positions",
    )  # fmt: skip
    # Ratings kept newest-first in each item's document.
    last_ratings: int = Field(10, ge=0)
    # Event-time window of sales_by_region, and how late (event time to arrival
    # in Kafka) an order may be and still count in its window; later orders are
    # counted per view as `late_orders`, never silently.
    sales_window: Interval = "1 minute"
    sales_lateness_s: float = Field(600.0, ge=0)
    # trending_items: velocity over the last N minutes of event time, top K per category.
    trending_minutes: int = Field(15, ge=1)
    trending_top: int = Field(10, ge=1)
    # inventory_positions: on hand at or below this is low stock.
    low_stock_threshold: int = Field(2, ge=0)
    # The serving stores the serving path feeds, each with its own offsets (fan-out):
    # "sqlite" (an embedded file, the default) and/or "postgres" (`postgres:` settings).
    stores: tuple[StoreKind, ...] = ("sqlite",)
    # The SQLite serving store; default <lake>/_serving/views.db.
    sqlite_path: Path | None = None

    @field_validator("stores")
    @classmethod
    def _some_distinct_stores(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError("must name one or more stores, each once")
        return value

    @property
    def store_path(self) -> Path:
        """The serving store's file, which `load_settings` always fills in."""
        if self.sqlite_path is None:
            raise ConfigError("views.sqlite_path is unset: build settings with load_settings")
        return self.sqlite_path


class ServingSettings(_Frozen):
    """Kafka -> the serving store's views in one hop (`run serving`)."""

    # "0 seconds": the next micro-batch starts as soon as one ends (freshness first).
    trigger_interval: Interval = "0 seconds"
    # Records per topic per micro-batch at most: a restart or a first run catches
    # up in batches of bounded cost instead of one batch of the whole backlog.
    max_offsets_per_trigger: int = Field(20_000, ge=1)
    # A continuous run uses Spark's real-time mode when the application has a task
    # slot per partition of the topics it reads (`local[16]` on a laptop): records
    # become facts in long-running tasks, which write them to `facts_topic`, and
    # one consumer folds them into the store. False, or too few slots: micro-batches.
    real_time: bool = True
    # The Kafka topic (one partition, created when missing) that hands each
    # record's facts from the real-time query to the store's one folder.
    facts_topic: str = "serving.facts"
    # How often the real-time query checkpoints its offsets: a restart re-reads at
    # most this much (the store skips what it applied). At least 500 milliseconds.
    checkpoint_interval: Interval = "2 minutes"

    @field_validator("checkpoint_interval")
    @classmethod
    def _half_a_second_at_least(cls, value: str) -> str:
        if interval_ms(value) < 500:
            raise ValueError("real-time mode checkpoints at most every 500 milliseconds")
        return value


class ScoreSettings(_Frozen):
    """Live scoring of departures by the disruption champion (`run score`)."""

    trigger_interval: Interval = "30 seconds"
    # A store is offered as a source of rerouted stock only for what it holds above
    # this (it would otherwise become low on stock itself).
    low_stock_threshold: int = Field(2, ge=0)


class ServeSettings(_Frozen):
    """The HTTP API and dashboard (`retailstream serve`)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    # Commands (POST) need this bearer token; set it from the environment
    # (RETAILSTREAM_SERVE__API_TOKEN). Empty: commands are refused.
    api_token: str = ""
    # When true, queries (GET) need the token too.
    protect_queries: bool = False
    # Read-your-writes: how long a query carrying a consistency token waits at most.
    consistency_wait_s: float = Field(5.0, ge=0)
    # A log line per request from `retailstream serve`. Off by default: it cost about a
    # quarter of the requests/s (bench/bench_api.py), and a proxy in front logs them.
    access_log: bool = False
    # The store the API reads; default: the first of views.stores.
    store: StoreKind | None = None


class LocalPostgresSettings(_Frozen):
    """The PostgreSQL server that `retailstream postgres start` runs on this machine."""

    enabled: bool = True
    host: str = "127.0.0.1"
    # Not 5432: a machine may run a PostgreSQL of its own there.
    port: int = Field(5433, ge=1, le=65535)
    data_dir: Path = Path("data/postgres")
    start_timeout_s: float = Field(60.0, gt=0)


class PostgresSettings(_Frozen):
    """The PostgreSQL serving store (`views.stores` holding "postgres")."""

    # libpq connection strings ("host=... dbname=... user=... password=...") of a server
    # of your own: the role the serving path writes the views with, and the read-only
    # role the API reads them with. Empty: the local server and the roles it was given.
    writer_dsn: str = ""
    reader_dsn: str = ""
    database: str = "retailstream"
    local_server: LocalPostgresSettings = Field(default_factory=LocalPostgresSettings)


class RecommenderSettings(_Frozen):
    """ALS on ratings: time-based splits, the hyperparameter grid, what is served."""

    # The newest share of ratings held out for the final evaluation, and the
    # newest share of the rest that picks the hyperparameters.
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    ranks: tuple[int, ...] = (8,)
    reg_params: tuple[float, ...] = (0.15, 0.2, 0.3)
    max_iter: int = Field(15, ge=1)
    # Recommendations per customer, and the stars from which a held-out rating
    # counts as relevant for precision@k and NDCG@k.
    top_k: int = Field(10, ge=1)
    relevant_stars: float = Field(4.0, ge=1.0, le=5.0)
    # Fewer ratings than this in the training split: refuse to train.
    min_ratings: int = Field(200, ge=1)
    seed: int = 7
    # Also learn from what customers do, not only what they rate: implicit ALS on
    # clicks, orders and good ratings, each weighted here (summed per customer and
    # sku); alpha scales that sum into ALS's confidence. Judged on rankings
    # (NDCG@k), since it predicts preference, not stars.
    implicit: bool = False
    signal_weights: dict[str, float] = Field(
        default_factory=lambda: {
            "view": 1.0, "wishlist": 2.0, "add_to_cart": 3.0, "remove_from_cart": 0.0,
            "order": 5.0, "rating": 5.0,
        }
    )  # fmt: skip
    implicit_alpha: float = Field(5.0, gt=0.0)


class DisruptionSettings(_Frozen):
    """Gradient-boosted trees on enriched shipments: late by more than a margin?"""

    # Delivered more than this many minutes after the ETA counts as late.
    margin_minutes: int = Field(60, ge=0)
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    iterations: tuple[int, ...] = (20, 50)
    depths: tuple[int, ...] = (3, 5)
    # Fewer delivered shipments than this in the training split: refuse to train.
    min_rows: int = Field(200, ge=1)
    seed: int = 7
    # Live scoring: a departure this likely to be late is an alert.
    alert_threshold: float = Field(0.5, gt=0.0, le=1.0)


class MlSettings(_Frozen):
    """Training, the MLflow tracking store and model registry."""

    # MLflow's tracking store and artifacts; empty URI: SQLite under store_dir.
    store_dir: Path = Path("models")
    tracking_uri: str = ""
    recommender_model: str = "retailstream-recommender"
    recommender: RecommenderSettings = Field(default_factory=RecommenderSettings)
    disruption_model: str = "retailstream-disruption"
    disruption: DisruptionSettings = Field(default_factory=DisruptionSettings)

    @property
    def tracking(self) -> str:
        return self.tracking_uri or f"sqlite:///{self.store_dir / 'mlflow.db'}"


class WorldSettings(_Frozen):
    """The simulated retailer (`retailstream world init`)."""

    seed: int = 42
    scale: Literal["small", "demo", "large"] = "small"


class GeneratorSettings(_Frozen):
    """The event generator (`retailstream produce`)."""

    # Share of records made defective (malformed, late, duplicated...), spread
    # over the defect kinds in the generator's default proportions.
    defect_share: float = Field(0.02, ge=0.0, le=0.5)
    # Events handed to the Kafka producer per generator step.
    batch_size: int = Field(5000, ge=1)


class Settings(_Frozen):
    env: str = DEFAULT_ENV
    home: Path = Path(".")
    lake: LakeSettings = Field(default_factory=LakeSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    refine: RefineSettings = Field(default_factory=RefineSettings)
    enrich: EnrichSettings = Field(default_factory=EnrichSettings)
    views: ViewsSettings = Field(default_factory=ViewsSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    ml: MlSettings = Field(default_factory=MlSettings)
    world: WorldSettings = Field(default_factory=WorldSettings)
    generator: GeneratorSettings = Field(default_factory=GeneratorSettings)

    @property
    def api_store(self) -> StoreKind:
        """The serving store the API reads (`serve.store`, else the first fed one)."""
        return self.serve.store or self.views.stores[0]


# ---------------------------------------------------------------------------
# Finding the project home and its layers


def find_home(start: Path | None = None) -> Path:
    """The project home: `$RETAILSTREAM_HOME`, else the nearest folder holding `conf/base/`."""
    override = os.environ.get(ENV_PREFIX + "HOME")
    if override:
        home = Path(override).resolve()
        if not (home / "conf" / "base").is_dir():
            raise ConfigError(f"RETAILSTREAM_HOME={override} has no conf/base/ folder")
        return home
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "conf" / "base").is_dir():
            return folder
    raise ConfigError(
        f"no conf/base/ found in {here} or above: run from the project folder or set RETAILSTREAM_HOME"
    )


# Folders of conf/ that are not envs: the layers every env shares, and data
# declared there (the expectation suites are read by the quality code).
NOT_ENVS = frozenset({"base", "local", "expectations"})


def available_envs(home: Path) -> list[str]:
    conf = home / "conf"
    return sorted(p.name for p in conf.iterdir() if p.is_dir() and p.name not in NOT_ENVS)


def _layer_files(home: Path, env: str) -> list[Path]:
    conf = home / "conf"
    env_dir = conf / env
    if env != "base" and not env_dir.is_dir():
        raise ConfigError(
            f"unknown env {env!r}: there is no conf/{env}/ (available: {', '.join(available_envs(home))})"
        )
    files: list[Path] = []
    for folder in (conf / "base", env_dir, conf / "local"):
        if folder.is_dir():
            files.extend(sorted([*folder.glob("*.yml"), *folder.glob("*.yaml")]))
    # With env == "base" the base folder comes twice; keep its first occurrence.
    return list(dict.fromkeys(files))


# ---------------------------------------------------------------------------
# Merging with provenance

Source = str
Path_ = tuple[str, ...]


def _merge(
    target: dict[str, Any],
    update: Mapping[str, Any],
    source: Source,
    sources: dict[Path_, Source],
    prefix: Path_ = (),
) -> None:
    for key, value in update.items():
        key = str(key)
        path = (*prefix, key)
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value, source, sources, path)
        elif isinstance(value, Mapping):
            target[key] = {}
            _merge(target[key], value, source, sources, path)
        else:
            target[key] = value
        sources[path] = source


def _read_yaml(path: Path, home: Path) -> dict[str, Any]:
    label = str(path.relative_to(home)) if path.is_relative_to(home) else str(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"{label}{where}: not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: expected a mapping of sections, got {type(data).__name__}")
    return data


_SEGMENT = re.compile(r'"([^"]*)"|([^.]+)')


def split_key(dotted: str) -> list[str]:
    """`kafka.topics."shop.orders".partitions` -> ['kafka', 'topics', 'shop.orders', 'partitions']."""
    parts = []
    position = 0
    while position < len(dotted):
        match = _SEGMENT.match(dotted, position)
        if not match:
            raise ConfigError(f"malformed key {dotted!r}: expected segments separated by dots")
        parts.append(match.group(1) if match.group(1) is not None else match.group(2))
        position = match.end()
        if position < len(dotted):
            if dotted[position] != ".":
                raise ConfigError(f"malformed key {dotted!r}: expected a dot after {parts[-1]!r}")
            position += 1
    if not parts:
        raise ConfigError("empty config key")
    return parts


def _nested(parts: Sequence[str], value: Any) -> dict[str, Any]:
    result: Any = value
    for part in reversed(parts):
        result = {part: result}
    return result


def _scalar(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def _env_overrides(environ: Mapping[str, str]) -> list[tuple[Source, dict[str, Any]]]:
    found = []
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        found.append((f"environment variable {name}", _nested(parts, _scalar(value))))
    return found


def _set_overrides(assignments: Sequence[str]) -> list[tuple[Source, dict[str, Any]]]:
    found = []
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set {assignment!r}: expected key=value, e.g. --set spark.master=local[2]"
            )
        found.append((f"--set {key.strip()}", _nested(split_key(key.strip()), _scalar(value))))
    return found


def _describe(path: Sequence[str | int]) -> str:
    return ".".join(f'"{p}"' if isinstance(p, str) and "." in p else str(p) for p in path)


def _source_of(path: Sequence[str | int], sources: Mapping[Path_, Source]) -> Source:
    keys = tuple(str(p) for p in path)
    for length in range(len(keys), 0, -1):
        if keys[:length] in sources:
            return sources[keys[:length]]
    return "defaults"


def _error_message(exc: ValidationError, sources: Mapping[Path_, Source]) -> str:
    first = exc.errors()[0]
    loc = first["loc"]
    where = _source_of(loc, sources)
    if first["type"] == "extra_forbidden":
        return f"unknown config key {_describe(loc)!r} (set in {where})"
    return f"config key {_describe(loc)!r} (set in {where}): {first['msg']}, got {first.get('input')!r}"


def _absolute(path: Path, home: Path) -> Path:
    return path if path.is_absolute() else home / path


def _anchor_paths(settings: Settings, home: Path) -> Settings:
    """Make every path setting absolute against the project home (defaults included)."""
    spark = settings.spark
    broker = settings.kafka.local_broker
    pg_server = settings.postgres.local_server
    refine = settings.refine
    views = settings.views
    lake_root = _absolute(settings.lake.root, home)
    sqlite_path = views.sqlite_path or lake_root / "_serving" / "views.db"
    return settings.model_copy(
        update={
            "views": views.model_copy(update={"sqlite_path": _absolute(sqlite_path, home)}),
            "refine": refine.model_copy(
                update={"expectations_dir": _absolute(refine.expectations_dir, home)}
            ),
            "lake": settings.lake.model_copy(update={"root": lake_root}),
            "ml": settings.ml.model_copy(
                update={"store_dir": _absolute(settings.ml.store_dir, home)}
            ),
            "spark": spark.model_copy(
                update={"driver_log": spark.driver_log and _absolute(spark.driver_log, home)}
            ),
            "postgres": settings.postgres.model_copy(
                update={
                    "local_server": pg_server.model_copy(
                        update={"data_dir": _absolute(pg_server.data_dir, home)}
                    )
                }
            ),
            "kafka": settings.kafka.model_copy(
                update={
                    "local_broker": broker.model_copy(
                        update={"data_dir": _absolute(broker.data_dir, home)}
                    )
                }
            ),
        }
    )


def load_settings(
    env: str | None = None,
    overrides: Sequence[str] = (),
    home: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge every layer for `env` and validate it into frozen `Settings`.

    `env` defaults to `$RETAILSTREAM_ENV`, else `dev`. Raises `ConfigError`
    with a one-line message naming the offending key and where it was set.
    """
    environ = os.environ if environ is None else environ
    home = (home or find_home()).resolve()
    env = env or environ.get(ENV_PREFIX + "ENV") or DEFAULT_ENV
    merged: dict[str, Any] = {}
    sources: dict[Path_, Source] = {}
    for path in _layer_files(home, env):
        data = _read_yaml(path, home)
        _merge(merged, data, str(path.relative_to(home)), sources)
    for source, data in (*_env_overrides(environ), *_set_overrides(overrides)):
        _merge(merged, data, source, sources)
    for reserved in ("env", "home"):
        if reserved in merged:
            raise ConfigError(f"{reserved!r} is not a config key (set in {sources[(reserved,)]})")
    if merged.get("spark", {}).get("driver_log") == "":
        merged["spark"]["driver_log"] = None  # empty: keep the JVM's output on the console
    try:
        settings = Settings.model_validate({**merged, "env": env, "home": home})
    except ValidationError as exc:
        raise ConfigError(_error_message(exc, sources)) from exc
    return _anchor_paths(settings, home)


def shipped_config_files(home: Path) -> list[Path]:
    """Every committed YAML file under conf/ (for tests and `config check`)."""
    return sorted(
        p
        for p in (home / "conf").rglob("*.y*ml")
        if not {"local", "expectations"} & set(p.relative_to(home / "conf").parts)
    )
