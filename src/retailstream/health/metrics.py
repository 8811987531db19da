"""The pipeline's health as Prometheus metrics (text exposition format), for `/metrics`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from retailstream.health.progress import QUARANTINED, ROWS
from retailstream.health.report import StageHealth

PREFIX = "retailstream_stream"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Snapshot(Collector):
    """The metrics of one health snapshot (a registry per scrape: no state between)."""

    def __init__(self, stages: Sequence[StageHealth], kafka_up: bool) -> None:
        self.stages = stages
        self.kafka_up = kafka_up

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("retailstream_kafka_up", "Whether Kafka answered this scrape")
        up.add_metric([], 1.0 if self.kafka_up else 0.0)
        yield up
        lag_records = GaugeMetricFamily(
            f"{PREFIX}_lag_records",
            "Records a stream has not read yet, per source (topic or Delta table) and partition",
            labels=["stream", "source", "partition"],
        )
        lag_seconds = GaugeMetricFamily(
            f"{PREFIX}_lag_seconds",
            "Age of the oldest record a stream has not read yet, per source and partition",
            labels=["stream", "source", "partition"],
        )
        for stage in self.stages:
            for lag in stage.lags:
                labels = [
                    stage.name,
                    lag.source,
                    "" if lag.partition is None else str(lag.partition),
                ]
                lag_records.add_metric(labels, float(lag.records))
                lag_seconds.add_metric(labels, lag.seconds)
        yield lag_records
        yield lag_seconds
        per_stream = {
            "input_rows_per_second": ("Rows per second arriving, last batch", lambda r: r.input_rows_per_s),
            "processed_rows_per_second": ("Rows per second processed, last batch", lambda r: r.processed_rows_per_s),
            "batch_duration_seconds": ("Duration of the last batch", lambda r: r.batch_ms / 1000),
            "trigger_interval_seconds": ("Configured trigger interval", lambda r: (r.trigger_ms or 0) / 1000),
            "state_rows": ("Rows held in state, last batch", lambda r: float(r.state_rows)),
            "late_rows": ("Rows dropped as later than the watermark, last batch", lambda r: float(r.late_rows)),
            "last_batch_id": ("Id of the last batch reported", lambda r: float(r.batch_id)),
        }  # fmt: skip
        for suffix, (text, value) in per_stream.items():
            family = GaugeMetricFamily(f"{PREFIX}_{suffix}", text, labels=["stream"])
            for stage in self.stages:
                if stage.report is not None:
                    family.add_metric([stage.name], value(stage.report))
            yield family
        silent = GaugeMetricFamily(
            f"{PREFIX}_report_age_seconds",
            "Seconds since the driver last reported the stream",
            labels=["stream"],
        )
        for stage in self.stages:
            if stage.silent_s is not None:
                silent.add_metric([stage.name], stage.silent_s)
        yield silent
        yield from _quarantine(self.stages)


def _quarantine(stages: Sequence[StageHealth]) -> Iterator[Metric]:
    """Refine's rows checked and quarantined since its job started: counters, so that
    Prometheus' rate() gives the quarantine rate (a row may have several reasons)."""
    checked = CounterMetricFamily(
        "retailstream_refined_rows", "Rows refine checked since its job started", labels=["table"]
    )
    quarantined = CounterMetricFamily(
        "retailstream_quarantined_rows",
        "Rows refine quarantined since its job started",
        labels=["table"],
    )
    reasons = CounterMetricFamily(
        "retailstream_quarantine_reasons",
        "Quarantined rows with each reason since refine's job started (a row may have several)",
        labels=["table", "reason"],
    )
    for stage in stages:
        for table, counts in (stage.report.tally if stage.report else {}).items():
            checked.add_metric([table], counts.get(ROWS, 0))
            quarantined.add_metric([table], counts.get(QUARANTINED, 0))
            for reason, count in sorted(counts.items()):
                if reason not in (ROWS, QUARANTINED):
                    reasons.add_metric([table, reason], count)
    yield checked
    yield quarantined
    yield reasons


def exposition(stages: Sequence[StageHealth], kafka_error: str | None) -> bytes:
    """The snapshot in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(stages, kafka_error is None))
    return generate_latest(registry)
