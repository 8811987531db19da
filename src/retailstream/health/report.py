"""The pipeline's health at a glance: each stream's rates, batches and lag behind
its sources, and one line saying what is wrong (`retailstream status`, `/metrics`).

Stages come from the driver's reports (`health.progress`); the serving path's
lag comes from the serving store's positions, the offsets its views have
applied (a real-time query's progress moves only at its checkpoints).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException

from retailstream.config import Settings, StoreKind
from retailstream.health.lag import KafkaPositions, Lag, Partition, delta_lag, kafka_lags
from retailstream.health.progress import QUARANTINED, ROWS, QueryReport, health_dir, read_reports

# A stream is behind when its oldest unread record is older than this many
# trigger intervals (or batch durations, when its batches overrun the trigger)...
BEHIND_TRIGGERS = 3
# ... and older than this in any case: a batch or two of delay is not a problem.
BEHIND_AT_LEAST_S = 30.0
# A report older than this many intervals, and this many seconds, is a stream
# that stopped reporting.
SILENT_TRIGGERS = 10
SILENT_AT_LEAST_S = 60.0
# The serving path's stage per store, and the queries that may feed it.
SERVING_STAGES: dict[str, str] = {"sqlite": "serving_views", "postgres": "serving_views_postgres"}
SERVING_QUERIES = {
    "sqlite": ("serving_views", "serving_views_realtime"),
    "postgres": ("serving_views_postgres",),
}


@dataclass(frozen=True)
class StageHealth:
    """One stream: its last report (None: the serving store alone) and its lags."""

    name: str
    report: QueryReport | None
    lags: tuple[Lag, ...]
    now_ms: int

    @property
    def lag_records(self) -> int:
        return sum(lag.records for lag in self.lags)

    @property
    def lag_seconds(self) -> float:
        return max((lag.seconds for lag in self.lags), default=0.0)

    @property
    def worst(self) -> Lag | None:
        return max(self.lags, key=lambda lag: (lag.seconds, lag.records), default=None)

    @property
    def silent_s(self) -> float | None:
        """Seconds since the driver last wrote this stream's report."""
        if self.report is None:
            return None
        return max(0.0, (self.now_ms - self.report.written_ms) / 1000)

    @property
    def pace_s(self) -> float:
        """The stream's pace: its trigger interval, or its batch time when longer."""
        if self.report is None:
            return 0.0
        return max(self.report.trigger_ms or 0, self.report.batch_ms) / 1000

    @property
    def behind(self) -> bool:
        return self.lag_seconds > max(BEHIND_AT_LEAST_S, BEHIND_TRIGGERS * self.pace_s)

    @property
    def silent(self) -> bool:
        silent = self.silent_s
        return silent is not None and silent > max(SILENT_AT_LEAST_S, SILENT_TRIGGERS * self.pace_s)


def duration(seconds: float) -> str:
    """A short human duration: 850 ms, 12 s, 4 min, 2.5 h (pure)."""
    if seconds == 0:
        return "0 s"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def verdict(stages: Sequence[StageHealth], kafka_error: str | None = None) -> str:
    """One line: what is wrong with the pipeline, or that nothing is (pure)."""
    if kafka_error:
        return f"Kafka does not answer ({kafka_error}): no lag can be measured"
    if not stages:
        return "no stream has reported yet: start one (`retailstream run ...` or `make demo`)"
    behind = [s for s in stages if s.behind]
    if behind:
        stage = max(behind, key=lambda s: s.lag_seconds)
        worst = stage.worst
        assert worst is not None
        where = worst.source if worst.partition is None else f"{worst.source}[{worst.partition}]"
        line = f"{stage.name} is {duration(stage.lag_seconds)} behind {where}"
        if stage.report is not None and stage.report.trigger_ms is not None:
            line += (
                f": its batches take {duration(stage.report.batch_ms / 1000)}"
                f" against a {duration(stage.report.trigger_ms / 1000)} trigger"
            )
        return line
    silent = [s for s in stages if s.silent]
    if silent:
        stage = max(silent, key=lambda s: s.silent_s or 0.0)
        return (
            f"{stage.name} has not reported for {duration(stage.silent_s or 0.0)}: is it running?"
        )
    stage = max(stages, key=lambda s: s.lag_seconds)
    if stage.lag_records == 0:
        return f"all {len(stages)} streams keep up: nothing is waiting to be read"
    worst = stage.worst
    assert worst is not None
    return (
        f"all {len(stages)} streams keep up: the furthest behind is {stage.name},"
        f" {duration(stage.lag_seconds)} behind {worst.source}"
    )


def _store_positions(settings: Settings, kind: StoreKind) -> dict[Partition, int] | None:
    """The next offset each topic partition's least advanced serving view will read,
    from the serving store of `kind`; None when there is no store yet, or it does not
    answer (then its query's report tells)."""
    from retailstream.views.serving import view_topics
    from retailstream.views.store import ServingStore, open_store
    from retailstream.views.stores import STORE_ERRORS

    store: ServingStore
    if kind == "sqlite":
        if not Path(settings.views.store_path).exists():
            return None
        store = open_store(settings.views.store_path)
    else:
        from retailstream.postgres_server import reader_dsn
        from retailstream.views.postgres_store import PostgresStore

        store = PostgresStore(reader_dsn(settings), writer=False, connect_timeout_s=2)
    reached: dict[Partition, int] = {}
    try:
        for view in settings.views.views:
            for topic in view_topics(view):
                for partition, offset in store.positions(view, topic).items():
                    key = (topic, partition)
                    reached[key] = min(reached.get(key, offset + 1), offset + 1)
    except STORE_ERRORS:
        return None
    return reached or None


def _kafka_next(report: QueryReport) -> dict[Partition, int]:
    return {
        (topic, int(p)): offset
        for source in report.sources
        if source.kind == "kafka"
        for topic, parts in source.next_offsets.items()
        for p, offset in parts.items()
    }


def pipeline_health(
    settings: Settings, now_ms: int | None = None
) -> tuple[list[StageHealth], str | None]:
    """Every stream's health, and Kafka's error if it did not answer."""
    now_ms = now_ms or int(time.time() * 1000)
    reports = {r.name: r for r in read_reports(health_dir(settings))}
    serving: dict[str, QueryReport | None] = {}
    for kind, names in SERVING_QUERIES.items():
        serving[SERVING_STAGES[kind]] = next((reports[n] for n in names if n in reports), None)
        for name in names:
            reports.pop(name, None)
    wanted: dict[str, dict[Partition, int]] = {name: _kafka_next(r) for name, r in reports.items()}
    stores: dict[str, dict[Partition, int]] = {}
    for kind in settings.views.stores:
        store_next = _store_positions(settings, kind)
        if store_next is not None:
            stores[SERVING_STAGES[kind]] = wanted[SERVING_STAGES[kind]] = store_next
    kafka = KafkaPositions(settings.kafka.bootstrap)
    try:
        partitions = sorted({key for positions in wanted.values() for key in positions})
        ends = kafka.ends(partitions, timeout_s=2.0)
        # The oldest unread record of each lagging partition: the least advanced stream's.
        first: dict[Partition, int] = {}
        for positions in wanted.values():
            for key, offset in positions.items():
                if ends.get(key, offset) > offset:
                    first[key] = min(first.get(key, offset), offset)
        stamps = kafka.timestamps_at(first)
    except KafkaException as exc:
        return [], str(exc.args[0]) if exc.args else "KafkaException"
    finally:
        with contextlib.suppress(Exception):
            kafka.close()
    stages = []
    for name, report in sorted(reports.items()):
        lags = kafka_lags(wanted[name], ends, _stamps_for(wanted[name], first, stamps), now_ms)
        for source in report.sources:
            if source.kind == "delta" and source.table:
                lags.append(delta_lag(Path(source.table), source.next_version, now_ms / 1000))
        stages.append(StageHealth(name, report, tuple(lags), now_ms))
    for name, store_next in stores.items():
        lags = kafka_lags(store_next, ends, _stamps_for(store_next, first, stamps), now_ms)
        stages.append(StageHealth(name, serving[name], tuple(lags), now_ms))
    return stages, None


def _stamps_for(
    positions: dict[Partition, int], first: dict[Partition, int], stamps: dict[Partition, int]
) -> dict[Partition, int]:
    """The first-unread timestamps that apply to this stream: those read at its own
    offsets (another stream's older first record would overstate its lag)."""
    return {k: ms for k, ms in stamps.items() if k in positions and first.get(k) == positions[k]}


def render(stages: Sequence[StageHealth], kafka_error: str | None) -> str:
    """`retailstream status`: a line per stream, then the verdict (pure)."""
    header = (
        f"{'stream':<24}{'batch':>8}{'in/s':>10}{'done/s':>10}{'batch/trigger':>16}"
        f"{'state':>9}{'late':>6}{'behind':>12}{'oldest':>9}{'reported':>13}"
    )
    lines = [header]
    for s in stages:
        r = s.report
        if r is None:
            cells = f"{'-':>8}{'-':>10}{'-':>10}{'-':>16}{'-':>9}{'-':>6}"
            reported = "-"
        else:
            trigger = "-" if r.trigger_ms is None else duration(r.trigger_ms / 1000)
            pace = f"{duration(r.batch_ms / 1000)}/{trigger}"
            cells = (
                f"{r.batch_id:>8}{r.input_rows_per_s:>10,.0f}{r.processed_rows_per_s:>10,.0f}"
                f"{pace:>16}{r.state_rows:>9,}{r.late_rows:>6,}"
            )
            reported = f"{duration(s.silent_s or 0.0)} ago"
        lines.append(
            f"{s.name:<24}{cells}{s.lag_records:>12,}{duration(s.lag_seconds):>9}{reported:>13}"
        )
    lines += quarantine_lines(stages)
    lines.append("")
    lines.append(verdict(stages, kafka_error))
    return "\n".join(lines)


def quarantine_lines(stages: Sequence[StageHealth], reasons: int = 3) -> list[str]:
    """A line per table with quarantined rows since refine started: its share and its
    commonest reasons (pure)."""
    lines = []
    for stage in stages:
        for table, counts in sorted((stage.report.tally if stage.report else {}).items()):
            bad, rows = counts.get(QUARANTINED, 0), counts.get(ROWS, 0)
            if not bad:
                continue
            top = sorted(
                ((n, r) for r, n in counts.items() if r not in (ROWS, QUARANTINED)), reverse=True
            )[:reasons]
            why = ", ".join(f"{r} {n:,}" for n, r in top)
            lines.append(
                f"  quarantined {table}: {bad:,} of {rows:,} rows ({100 * bad / rows:.1f} %): {why}"
            )
    return lines


def document(stages: Sequence[StageHealth], kafka_error: str | None) -> dict[str, Any]:
    """The health as JSON for the API and the dashboard (pure)."""
    streams = []
    for s in stages:
        worst = s.worst
        report = None
        if s.report is not None:
            r = s.report
            report = {
                "batch_id": r.batch_id,
                "batch_ms": r.batch_ms,
                "trigger_ms": r.trigger_ms,
                "input_rows_per_s": r.input_rows_per_s,
                "processed_rows_per_s": r.processed_rows_per_s,
                "state_rows": r.state_rows,
                "late_rows": r.late_rows,
                "reported_s_ago": s.silent_s,
                "quarantine": r.tally,
            }
        streams.append(
            {
                "name": s.name,
                "lag_records": s.lag_records,
                "lag_seconds": s.lag_seconds,
                "behind": s.behind,
                "silent": s.silent,
                "worst": None if worst is None else asdict(worst),
                "report": report,
            }
        )
    healthy = kafka_error is None and not any(s.behind or s.silent for s in stages)
    return {
        "verdict": verdict(stages, kafka_error),
        "healthy": healthy,
        "kafka_error": kafka_error,
        "streams": streams,
    }
