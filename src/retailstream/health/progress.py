"""What a streaming query's progress says about its health (pure), and the driver's
reporter that writes it where the API and `retailstream status` read it.

The API may run in another process than the Spark driver, and `status` runs
in a third: so the driver writes each active query's last progress, cut to
what health needs, as a small JSON file per query (`<lake>/_health/<query>.json`,
replaced atomically). Lag is not computed here: the reader compares the
offsets a query has read through with Kafka's end *when it reads*, so a
query that has stopped reporting shows its lag growing instead of freezing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from retailstream.config import Settings, interval_ms
from retailstream.io import datasets

log = logging.getLogger(__name__)

HEALTH_DIR = "_health"
# How often the reporter writes the active queries' progress: a scrape every
# 15 s sees a batch at most this much late, for a Py4J call per query.
REPORT_EVERY_S = 2.0
DELTA_SOURCE = re.compile(r"DeltaSource\[(?:file:)?([^\]]+)\]")


# Per table: rows refined, rows quarantined, and rows quarantined by each reason
# ({"orders": {"rows": 9000, "quarantined": 40, "unknown_sku": 25, ...}}), since the
# job started.
Tally = dict[str, dict[str, int]]
ROWS, QUARANTINED = "rows", "quarantined"
# What a job counts beside its query's progress, by query name. Process-wide because
# the launcher starts the reporter before the job builds its query (`publish_tally`).
_TALLIES: dict[str, Callable[[], Tally]] = {}


def publish_tally(query_name: str, provider: Callable[[], Tally]) -> None:
    """Have the reporter include `provider()` in `query_name`'s reports."""
    _TALLIES[query_name] = provider


@dataclass(frozen=True)
class SourceRead:
    """How far a query has read one of its sources. Kafka: the next offset to read
    per (topic, partition); Delta: the table and the next version to read."""

    kind: str  # "kafka" or "delta"
    next_offsets: dict[str, dict[str, int]] = field(default_factory=dict)
    table: str | None = None
    next_version: int | None = None


@dataclass(frozen=True)
class QueryReport:
    """One streaming query's last progress, as health reads it."""

    name: str
    batch_id: int
    at_ms: int  # when the batch started (Spark's progress timestamp)
    batch_ms: int  # the batch's triggerExecution time
    trigger_ms: int | None  # the configured trigger interval, when known
    input_rows_per_s: float
    processed_rows_per_s: float
    input_rows: int
    state_rows: int
    late_rows: int
    sources: tuple[SourceRead, ...]
    written_ms: int = 0  # when the reporter wrote it
    tally: Tally = field(default_factory=dict)  # refine's rows and quarantine, when it has one

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> QueryReport:
        doc = json.loads(text)
        doc["sources"] = tuple(SourceRead(**s) for s in doc["sources"])
        return QueryReport(**doc)


def _offsets(value: Any) -> Any:
    """A source offset as Spark reports it: JSON text, or already decoded."""
    return json.loads(value) if isinstance(value, str) else value


def source_read(source: Mapping[str, Any]) -> SourceRead | None:
    """What one source entry of a progress says was read (None: a source health
    does not follow, or one that has read nothing yet)."""
    description = str(source.get("description", ""))
    end = _offsets(source.get("endOffset"))
    if description.startswith("Kafka") and isinstance(end, dict):
        return SourceRead(
            "kafka",
            next_offsets={
                topic: {str(p): int(o) for p, o in parts.items()} for topic, parts in end.items()
            },
        )
    match = DELTA_SOURCE.search(description)
    if match:
        # Past file `index` of `reservoirVersion` counts as past that version; at
        # index -1 the version itself is next.
        version = None
        if isinstance(end, dict) and "reservoirVersion" in end:
            version = int(end["reservoirVersion"]) + (int(end.get("index", -1)) != -1)
        return SourceRead("delta", table=match.group(1), next_version=version)
    return None


def _time_ms(text: str) -> int:
    """Spark's progress timestamp ("2026-12-07T01:02:03.456Z") in epoch ms."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def query_report(progress: Mapping[str, Any], trigger_ms: int | None) -> QueryReport:
    """The health summary of one progress document (`StreamingQueryProgress.json`)."""
    operators = progress.get("stateOperators") or []
    reads = [source_read(s) for s in progress.get("sources") or []]
    return QueryReport(
        name=str(progress.get("name") or progress.get("id")),
        batch_id=int(progress.get("batchId", -1)),
        at_ms=_time_ms(str(progress["timestamp"])),
        batch_ms=int((progress.get("durationMs") or {}).get("triggerExecution", 0)),
        trigger_ms=trigger_ms,
        input_rows_per_s=float(progress.get("inputRowsPerSecond") or 0.0),
        processed_rows_per_s=float(progress.get("processedRowsPerSecond") or 0.0),
        input_rows=int(progress.get("numInputRows") or 0),
        state_rows=sum(int(o.get("numRowsTotal", 0)) for o in operators),
        late_rows=sum(int(o.get("numRowsDroppedByWatermark", 0)) for o in operators),
        sources=tuple(r for r in reads if r is not None),
    )


def trigger_intervals(settings: Settings) -> dict[str, int]:
    """Each query's configured trigger interval in ms, by query name."""
    return {
        datasets.INGEST_QUERY: interval_ms(settings.ingest.trigger_interval),
        datasets.REFINE_QUERY: interval_ms(settings.refine.trigger_interval),
        datasets.GOLD_QUERY: interval_ms(settings.views.trigger_interval),
        datasets.SERVING_QUERY: interval_ms(settings.serving.trigger_interval),
        datasets.SERVING_POSTGRES_QUERY: interval_ms(settings.serving.trigger_interval),
        datasets.SCORE_QUERY: interval_ms(settings.score.trigger_interval),
        **{
            query: interval_ms(settings.enrich.trigger_interval)
            for query in datasets.ENRICH_QUERIES
        },
    }


def health_dir(settings: Settings) -> Path:
    return settings.lake.root / HEALTH_DIR


def write_report(directory: Path, report: QueryReport) -> None:
    """Replace the query's report file atomically (a reader never sees half of it)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{report.name}.json"
    partial = target.with_suffix(f".json.{os.getpid()}")
    partial.write_text(report.to_json())
    partial.replace(target)


def read_reports(directory: Path) -> list[QueryReport]:
    """Every query report in `directory`, by name (unreadable files are skipped:
    a report being replaced is read again on the next call)."""
    reports = []
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            reports.append(QueryReport.from_json(path.read_text()))
    return reports


class Reporter:
    """A driver thread that writes each active query's last progress every
    `every_s` seconds, and once more when it stops."""

    def __init__(self, spark: SparkSession, settings: Settings, every_s: float = REPORT_EVERY_S):
        self.spark = spark
        self.directory = health_dir(settings)
        self.triggers = trigger_intervals(settings)
        self.every_s = every_s
        self._stop = threading.Event()
        self._written: dict[str, tuple[str, int]] = {}  # name -> (run id, batch id)
        # Every query seen active: one that ends between two reports (an available-now
        # drain) still gets its last batch reported.
        self._seen: dict[str, StreamingQuery] = {}
        self._thread = threading.Thread(target=self._loop, name="health-reporter", daemon=True)

    def start(self) -> Reporter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.report_once()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.report_once()

    def report_once(self, queries: Sequence[StreamingQuery] | None = None) -> int:
        """Write the reports of `queries` (default: the active ones, and those seen
        active before, which may have stopped since) that have a batch not written
        yet; return how many were written."""
        written = 0
        if queries is None:
            try:
                for active in self.spark.streams.active:
                    self._seen[str(active.id)] = active
            except Exception:  # noqa: BLE001 - the JVM is going away: nothing to report
                return 0
            queries = list(self._seen.values())
        for query in queries:
            try:
                last = query._jsq.lastProgress()  # the JVM's object: its JSON as Spark writes it
                if last is None:
                    continue
                progress = json.loads(last.json())
            except Exception:  # noqa: BLE001 - a query stopping under us
                continue
            report = query_report(progress, self.triggers.get(str(progress.get("name"))))
            key = (str(progress.get("runId")), report.batch_id)
            if self._written.get(report.name) == key:
                continue
            tally = _TALLIES.get(report.name)
            stamped = dataclasses.replace(
                report, written_ms=int(time.time() * 1000), tally=tally() if tally else {}
            )
            try:
                write_report(self.directory, stamped)
            except OSError as exc:
                log.warning("could not write the health report of %s: %s", report.name, exc)
                continue
            self._written[report.name] = key
            written += 1
        return written


@contextlib.contextmanager
def reporting(spark: SparkSession, settings: Settings) -> Iterator[Reporter]:
    """Report the session's streaming queries while the block runs."""
    reporter = Reporter(spark, settings).start()
    try:
        yield reporter
    finally:
        reporter.stop()
