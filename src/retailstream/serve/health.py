"""`GET /v1/health`: can the API answer queries (store) and take commands (broker)?

A metadata request to Kafka costs a round trip (and up to its timeout when the
broker is gone), so its outcome is cached for a few seconds: a health check
polled every second must not become load on the broker, nor hang.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import Any

from retailstream.config import Settings
from retailstream.health.metrics import exposition
from retailstream.health.report import StageHealth, document, pipeline_health
from retailstream.kafka.broker import broker_reachable
from retailstream.views.store import ServingStore
from retailstream.views.stores import STORE_ERRORS

BROKER_CACHE_S = 5.0
BROKER_TIMEOUT_S = 1.0


class BrokerProbe:
    """Whether Kafka answers at `bootstrap`, re-checked at most every `cache_s` seconds."""

    def __init__(
        self, bootstrap: str, cache_s: float = BROKER_CACHE_S, timeout_s: float = BROKER_TIMEOUT_S
    ) -> None:
        self.bootstrap = bootstrap
        self.cache_s = cache_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._checked_at = float("-inf")
        self._reachable = False

    def reachable(self) -> tuple[bool, float]:
        """(reachable, age of that answer in seconds); blocks for one probe at most."""
        with self._lock:  # one probe at a time; concurrent callers share its answer
            now = time.monotonic()
            if now - self._checked_at >= self.cache_s:
                self._reachable = broker_reachable(self.bootstrap, timeout_s=self.timeout_s)
                self._checked_at = now = time.monotonic()
            return self._reachable, now - self._checked_at


class PipelineProbe:
    """The pipeline's health, measured at most every `cache_s` seconds: each measure
    asks Kafka for end offsets and first unread records, so scrapers and dashboards
    polling together must not multiply it."""

    def __init__(self, settings: Settings, cache_s: float = BROKER_CACHE_S) -> None:
        self.settings = settings
        self.cache_s = cache_s
        self._lock = threading.Lock()
        self._measured_at = float("-inf")
        self._health: tuple[list[StageHealth], str | None] = ([], None)

    def measure(self) -> tuple[list[StageHealth], str | None]:
        with self._lock:  # one measure at a time; concurrent callers share it
            if time.monotonic() - self._measured_at >= self.cache_s:
                self._health = pipeline_health(self.settings)
                self._measured_at = time.monotonic()
            return self._health

    def metrics(self) -> bytes:
        """Prometheus' text format."""
        return exposition(*self.measure())

    def document(self) -> dict[str, Any]:
        """JSON for the dashboard's pipeline panel."""
        return document(*self.measure())


def view_positions(
    store: ServingStore, views: Iterable[str], topics: Iterable[str]
) -> dict[str, dict[str, dict[str, int]]]:
    """{view: {topic: {partition: offset}}} of every view/topic the store has a position for."""
    topics = list(topics)
    found: dict[str, dict[str, dict[str, int]]] = {}
    for view in views:
        for topic in topics:
            offsets = store.positions(view, topic)
            if offsets:
                found.setdefault(view, {})[topic] = {str(p): o for p, o in sorted(offsets.items())}
    return found


def health(
    store: ServingStore, probe: BrokerProbe, views: Iterable[str], topics: Iterable[str]
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, document). `ok`: all up; `degraded`: no broker, so no commands; `down`: no store."""
    reachable, age = probe.reachable()
    broker = {"reachable": reachable, "bootstrap": probe.bootstrap, "checked_s_ago": round(age, 1)}
    try:
        positions = view_positions(store, views, topics)
        store_state: dict[str, Any] = {"reachable": True}
    except STORE_ERRORS as exc:
        positions = {}
        store_state = {"reachable": False, "error": str(exc)}
    if not store_state["reachable"]:
        status = "down"
    else:
        status = "ok" if reachable else "degraded"
    document = {"status": status, "store": store_state, "broker": broker, "positions": positions}
    return (503 if status == "down" else 200), document
