"""Deliberate data defects, injected into a clean record sequence and recorded as truth.

Real streams carry garbage; the platform must quarantine it without stopping and without
losing anything. Each defect kind below is something a producer, network or clock really
does. A record gets at most one defect. Kinds and what they do to a record:

- invalid_json: value is not JSON (a doubled comma, a missing colon, a trailing comma)
- truncated: value cut short at a random byte
- non_utf8: invalid UTF-8 bytes inserted into a string (strictly not JSON text either)
- empty: empty value
- wrong_type: a field has the wrong JSON type (stars "five", eta as epoch number, ...)
- missing_field: a required field other than event_id is absent
- out_of_range: a value outside its domain (stars 7, quantity 0, negative price, ...)
- unknown_sku: a sku that is not in the product table
- future_time: event_time hours ahead of the simulated clock
- late_time: event_time hours behind the simulated clock (the record arrives late)
- out_of_order: the record swaps places with the next record of the same topic (both
  records are reported)
- duplicate: an exact copy (same bytes, same event_id) emitted again a few records later;
  the copy is reported, the original is clean
"""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

import numpy as np

from retailstream.world.records import (
    TOPIC_CLICKSTREAM,
    TOPIC_ORDERS,
    TOPIC_RATINGS,
    TOPIC_SHIPMENTS,
    TOPIC_WEATHER,
    TOPIC_WORLD_EVENTS,
    KafkaRecord,
)

MALFORMED_KINDS = frozenset({"invalid_json", "truncated", "non_utf8", "empty"})
SKU_TOPICS = frozenset({TOPIC_CLICKSTREAM, TOPIC_ORDERS, TOPIC_RATINGS, TOPIC_SHIPMENTS})


@dataclass(frozen=True)
class DefectRates:
    """Probability per record of each defect kind (default total about 2%)."""

    invalid_json: float = 0.002
    truncated: float = 0.0015
    non_utf8: float = 0.001
    empty: float = 0.001
    wrong_type: float = 0.002
    missing_field: float = 0.002
    out_of_range: float = 0.002
    unknown_sku: float = 0.002
    future_time: float = 0.001
    late_time: float = 0.002
    out_of_order: float = 0.001
    duplicate: float = 0.002

    def __post_init__(self) -> None:
        for kind, rate in asdict(self).items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"defect rate {kind}={rate} must be within [0, 1]")
        if self.total > 0.5:
            raise ValueError(f"total defect rate {self.total:.3f} is above 0.5")

    @classmethod
    def none(cls) -> DefectRates:
        """No defects at all: a clean stream."""
        return cls(**{kind: 0.0 for kind in asdict(cls())})

    @property
    def total(self) -> float:
        return float(sum(asdict(self).values()))

    def kinds(self) -> tuple[str, ...]:
        return tuple(asdict(self))


# Per topic: fields that may go missing (all required), and typed/ranged corruptions.
_REQUIRED: dict[str, tuple[str, ...]] = {
    TOPIC_CLICKSTREAM: ("event_time", "session_id", "customer_id", "sku", "action", "channel"),
    TOPIC_ORDERS: ("event_time", "order_id", "customer_id", "channel", "lines", "total"),
    TOPIC_RATINGS: ("event_time", "customer_id", "sku", "stars"),
    TOPIC_SHIPMENTS: ("event_time", "shipment_id", "status", "route_id", "lines", "eta"),
    TOPIC_WEATHER: ("event_time", "region", "kind", "condition", "severity"),
    TOPIC_WORLD_EVENTS: (
        "event_time",
        "world_event_id",
        "region",
        "kind",
        "severity",
        "starts_at",
        "ends_at",
    ),
}
_STAR_WORDS = ("one", "two", "three", "four", "five")


def _wrong_type(topic: str, doc: dict, pick: float) -> str:
    if topic == TOPIC_RATINGS:
        doc["stars"] = _STAR_WORDS[int(doc["stars"]) - 1]
        return "stars as a word"
    if topic == TOPIC_CLICKSTREAM:
        doc["sku"] = int(doc["sku"].split("-")[1])
        return "sku as a number"
    if topic == TOPIC_ORDERS:
        if pick < 0.5:
            doc["total"] = f"{doc['total']:.2f} EUR"
            return "total as a string"
        doc["lines"][0]["quantity"] = str(doc["lines"][0]["quantity"])
        return "line quantity as a string"
    if topic == TOPIC_SHIPMENTS:
        eta = datetime.fromisoformat(doc["eta"].replace("Z", "+00:00"))
        doc["eta"] = int(eta.timestamp())
        return "eta as epoch seconds"
    if topic == TOPIC_WEATHER:
        doc["severity"] = ("calm", "mild", "moderate", "high", "severe", "extreme")[doc["severity"]]
        return "severity as a word"
    doc["severity"] = str(doc["severity"])
    return "severity as a string"


def _out_of_range(topic: str, doc: dict, pick: float) -> str:
    if topic == TOPIC_RATINGS:
        doc["stars"] = (0, 6, 7, 10, -1)[int(pick * 5)]
        return f"stars {doc['stars']}"
    if topic == TOPIC_CLICKSTREAM:
        doc["action"] = "purchase"
        return "action not in domain"
    if topic == TOPIC_ORDERS:
        if pick < 0.4:
            doc["lines"][0]["quantity"] = 0
            return "line quantity 0"
        if pick < 0.8:
            doc["lines"][0]["unit_price"] = -abs(doc["lines"][0]["unit_price"])
            return "negative unit price"
        doc["total"] = -abs(doc["total"])
        return "negative total"
    if topic == TOPIC_SHIPMENTS:
        doc["lines"][0]["quantity"] = 0 if pick < 0.5 else -doc["lines"][0]["quantity"]
        return f"line quantity {doc['lines'][0]['quantity']}"
    if topic == TOPIC_WEATHER:
        if pick < 0.5:
            doc["severity"] = 9
            return "severity 9"
        doc["temperature_c"] = 87.5
        return "temperature 87.5"
    if pick < 0.5:
        doc["severity"] = 9
        return "severity 9"
    doc["starts_at"], doc["ends_at"] = doc["ends_at"], doc["starts_at"]
    return "ends before it starts"


def _unknown_sku(topic: str, doc: dict, pick: float) -> str:
    sku = f"SKU-9{int(pick * 100000):05d}"  # real skus never exceed SKU-099999
    if topic in (TOPIC_ORDERS, TOPIC_SHIPMENTS):
        doc["lines"][0]["sku"] = sku
    else:
        doc["sku"] = sku
    return sku


def _shift_time(doc: dict, hours: float) -> str:
    moment = datetime.fromisoformat(doc["event_time"].replace("Z", "+00:00"))
    shifted = moment + timedelta(hours=hours)
    doc["event_time"] = (
        shifted.strftime("%Y-%m-%dT%H:%M:%S.") + f"{shifted.microsecond // 1000:03d}Z"
    )
    return f"event_time shifted {hours:+.1f} h"


def _dumps(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def original_event_id(value: bytes) -> str:
    """The event_id of a clean value (all values start with it, see records._head)."""
    return value[13:45].decode()


@dataclass
class InjectionResult:
    """Records after injection and where each clean record ended up.

    `position_of[i]` is the output position of input record i; `defects` holds one dict per
    defective output record with its `position` (in the output list).
    """

    records: list[KafkaRecord]
    position_of: np.ndarray
    defects: list[dict]


class DefectInjector:
    """Applies `DefectRates` to lists of clean records, deterministically from its seed."""

    def __init__(self, rates: DefectRates, rng: np.random.Generator) -> None:
        self.rates = rates
        self.rng = rng
        self._kinds = rates.kinds()
        self._p = np.array([getattr(rates, k) for k in self._kinds], dtype=np.float64)

    def inject(self, records: list[KafkaRecord]) -> InjectionResult:
        """Corrupt a share of `records` (which must all be clean) and report each defect."""
        n = len(records)
        total = float(self._p.sum())
        identity = np.arange(n, dtype=np.int64)
        if n == 0 or total <= 0.0:
            return InjectionResult(records, identity, [])
        hits = np.flatnonzero(self.rng.random(n) < total).tolist()
        if not hits:
            return InjectionResult(records, identity, [])
        uniforms = self.rng.random((len(hits), 3)).tolist()
        out = list(records)
        order = np.arange(n)  # input index at each slot, after swaps
        swaps: list[tuple[int, int]] = []
        copies: list[tuple[int, int]] = []  # (slot the copy follows, input index)
        touched: set[int] = set()
        defects: list[dict] = []
        cum = np.cumsum(self._p) / total

        for i, (u_kind, u_pick, u_shift) in zip(hits, uniforms, strict=True):
            if i in touched:
                continue
            topic = records[i].topic
            kind = self._kinds[int(np.searchsorted(cum, u_kind, side="right"))]
            if kind == "unknown_sku" and topic not in SKU_TOPICS:
                kind = "wrong_type"
            if kind == "out_of_order":
                partner = next(
                    (
                        j
                        for j in range(i + 1, min(i + 200, n))
                        if records[j].topic == topic and j not in touched
                    ),
                    None,
                )
                if partner is None:
                    kind = "late_time"
                else:
                    touched.update((i, partner))
                    order[i], order[partner] = partner, i
                    swaps.append((i, partner))
                    for j in (i, partner):
                        eid = original_event_id(records[j].value)
                        defects.append(
                            self._row(j, topic, eid, eid, kind, "swapped with a neighbour")
                        )
                    continue
            touched.add(i)
            if kind == "duplicate":
                after = min(i + 1 + int(u_pick * 20), n - 1)
                copies.append((after, i))
                eid = original_event_id(records[i].value)
                defects.append(
                    {
                        "_copy_of": i,
                        "_after": after,
                        "topic": topic,
                        "event_id": eid,
                        "original_event_id": eid,
                        "kind": kind,
                        "detail": "exact copy of an earlier record",
                    }
                )
                continue
            out[i], detail = self._corrupt(records[i], kind, u_pick, u_shift)
            eid = original_event_id(records[i].value)
            defects.append(
                self._row(i, topic, None if kind in MALFORMED_KINDS else eid, eid, kind, detail)
            )

        # Lay out the final sequence: swapped order, plus copies after their slot. Slices
        # keep this linear-time work in C; only the few defects are handled in Python.
        for a, b in swaps:
            out[a], out[b] = out[b], out[a]
        copies.sort(key=operator.itemgetter(0))  # stable: ties keep draw order
        final: list[KafkaRecord] = []
        start = 0
        for after, src in copies:
            final.extend(out[start : after + 1])
            final.append(records[src])
            start = after + 1
        final.extend(out[start:])
        after_slots = np.array([a for a, _ in copies], dtype=np.int64)
        slot_position = np.arange(n) + np.searchsorted(after_slots, np.arange(n), side="left")
        position_of = np.empty(n, dtype=np.int64)
        position_of[order] = slot_position
        copy_position = {(src, after): after + j + 1 for j, (after, src) in enumerate(copies)}
        for row in defects:
            if "_copy_of" in row:
                row["position"] = copy_position[(row.pop("_copy_of"), row.pop("_after"))]
            else:
                row["position"] = int(position_of[row.pop("_input")])
        return InjectionResult(final, position_of, defects)

    @staticmethod
    def _row(
        i: int, topic: str, event_id: str | None, original: str, kind: str, detail: str
    ) -> dict:
        return {
            "_input": i,
            "topic": topic,
            "event_id": event_id,
            "original_event_id": original,
            "kind": kind,
            "detail": detail,
        }

    @staticmethod
    def _corrupt(
        record: KafkaRecord, kind: str, u_pick: float, u_shift: float
    ) -> tuple[KafkaRecord, str]:
        value, topic, key = record.value, record.topic, record.key
        if kind == "empty":
            return KafkaRecord(topic, key, b""), "empty value"
        if kind == "truncated":
            cut = 1 + int(u_pick * (len(value) - 2))
            return KafkaRecord(topic, key, value[:cut]), f"cut at byte {cut} of {len(value)}"
        if kind == "non_utf8":
            at = value.index(b'"event_type":"') + 14  # inside the event_type string
            return KafkaRecord(topic, key, value[:at] + b"\xff\xfe" + value[at:]), "bytes ff fe"
        if kind == "invalid_json":
            if u_pick < 0.34:
                return KafkaRecord(topic, key, value.replace(b",", b",,", 1)), "doubled comma"
            if u_pick < 0.67:
                return KafkaRecord(topic, key, value.replace(b'":', b'" ', 1)), "missing colon"
            return KafkaRecord(topic, key, value[:-1] + b",}"), "trailing comma"

        doc = json.loads(value)
        if kind == "wrong_type":
            detail = _wrong_type(topic, doc, u_pick)
        elif kind == "missing_field":
            fields = _REQUIRED[topic]
            name = fields[min(int(u_pick * len(fields)), len(fields) - 1)]
            del doc[name]
            detail = f"missing {name}"
        elif kind == "out_of_range":
            detail = _out_of_range(topic, doc, u_pick)
        elif kind == "unknown_sku":
            detail = _unknown_sku(topic, doc, u_pick)
            if topic == TOPIC_RATINGS:  # ratings are keyed by sku: the producer keys by field
                key = doc["sku"].encode()
        elif kind == "future_time":
            detail = _shift_time(doc, 2.0 + 46.0 * u_shift)
        elif kind == "late_time":
            detail = _shift_time(doc, -(2.0 + 46.0 * u_shift))
        else:
            raise ValueError(f"unknown defect kind {kind!r}")
        return KafkaRecord(topic, key, _dumps(doc)), detail
