"""Shared, session-scoped simulation runs for the world tests (built once, read by many)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import pandas as pd
import pytest

from retailstream.world import (
    EVENT_TYPES,
    DefectRates,
    EventBatch,
    EventGenerator,
    KafkaRecord,
    World,
    build_world,
)
from retailstream.world.catalog import REGIONS
from retailstream.world.weather import CONDITIONS

START = datetime(2025, 3, 5, 6, 0, tzinfo=UTC)  # a Wednesday in early spring


@dataclass
class Run:
    """Batches of one generator run plus their values parsed once."""

    world: World
    generator: EventGenerator
    batches: list[EventBatch]
    docs: list[dict] = field(default_factory=list)  # parsed values, aligned with records
    events: dict[str, list[dict]] = field(default_factory=dict)  # parsed values by topic

    @cached_property
    def records(self) -> list[KafkaRecord]:
        """All records of the run; index = record_seq, since a run starts at 0."""
        return [r for b in self.batches for r in b.records]

    def truth(self, name: str) -> pd.DataFrame:
        return pd.concat([b.truth_frames()[name] for b in self.batches], ignore_index=True)


def run_generator(world: World, batches: list[int], parse: bool = True, **kwargs) -> Run:
    generator = EventGenerator(world, **kwargs)
    run = Run(world, generator, [generator.next_batch(n) for n in batches])
    if parse:
        for record in run.records:
            run.docs.append(json.loads(record.value))
            run.events.setdefault(record.topic, []).append(run.docs[-1])
    return run


@pytest.fixture(scope="session")
def small_world() -> World:
    return build_world(11, "small")


@pytest.fixture(scope="session")
def clean_run(small_world: World) -> Run:
    """About ten simulated days of a clean stream: enough shipments, ratings and weather
    for the causal checks (sim_seconds_per_event=3 -> 300k events ~ 10 days)."""
    return run_generator(
        small_world,
        [100_000, 100_000, 100_000],
        seed=5,
        start=START,
        sim_seconds_per_event=3.0,
        defect_rates=DefectRates.none(),
    )


@pytest.fixture(scope="session")
def defect_run(small_world: World) -> Run:
    """A stream with ten times the default defect rates, kept unparsed."""
    rates = DefectRates(**{k: 10 * v for k, v in vars(DefectRates()).items()})
    return run_generator(
        small_world,
        [20_000, 17_000, 13_000],
        parse=False,
        seed=6,
        start=START,
        sim_seconds_per_event=1.0,
        defect_rates=rates,
    )


ISO_MS = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def _is_int(x: object) -> bool:
    return type(x) is int


def _is_number(x: object) -> bool:
    return type(x) in (int, float)


def _is_iso(x: object) -> bool:
    return isinstance(x, str) and ISO_MS.fullmatch(x) is not None


def contract_problems(world: World, topic: str, doc: dict) -> list[str]:
    """Everything wrong with one parsed event value (empty when it honours the contract)."""
    skus = _known(world, "products", "sku")
    problems = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    try:
        need(isinstance(doc.get("event_id"), str) and len(doc["event_id"]) == 32, "event_id")
        need(doc.get("event_type") in EVENT_TYPES[topic], "event_type")
        need(doc.get("schema_version") == 1 and _is_int(doc["schema_version"]), "version")
        need(_is_iso(doc.get("event_time")), "event_time")
        if topic == "shop.clickstream":
            need(isinstance(doc.get("session_id"), str), "session_id")
            need(doc.get("customer_id") in _known(world, "customers", "customer_id"), "customer")
            need(doc.get("sku") in skus, "sku")
            need(
                doc.get("action") in {"view", "add_to_cart", "remove_from_cart", "wishlist"},
                "action",
            )
            need(doc.get("channel") in {"web", "app"}, "channel")
        elif topic == "shop.orders":
            need(isinstance(doc.get("order_id"), str), "order_id")
            need(doc.get("customer_id") in _known(world, "customers", "customer_id"), "customer")
            store = doc.get("store_id", "missing")
            need(store is None or store in _known(world, "stores", "store_id"), "store_id")
            need(doc.get("channel") in {"store", "web", "app"}, "channel")
            need((store is None) == (doc.get("channel") != "store"), "store vs channel")
            lines = doc.get("lines")
            need(isinstance(lines, list) and len(lines) >= 1, "lines")
            for line in lines or []:
                need(line.get("sku") in skus, "line sku")
                need(_is_int(line.get("quantity")) and line["quantity"] >= 1, "quantity")
                need(_is_number(line.get("unit_price")) and line["unit_price"] > 0, "price")
            need(_is_number(doc.get("total")) and doc["total"] >= 0, "total")
            if not problems:
                assert isinstance(lines, list)  # "lines" above found no problem
                expected = sum(li["quantity"] * li["unit_price"] for li in lines)
                need(abs(expected - doc["total"]) < 0.011, "total != sum of lines")
            need(doc.get("currency") == "EUR", "currency")
        elif topic == "shop.ratings":
            need(doc.get("customer_id") in _known(world, "customers", "customer_id"), "customer")
            need(doc.get("sku") in skus, "sku")
            need(_is_int(doc.get("stars")) and 1 <= doc["stars"] <= 5, "stars")
        elif topic == "logistics.shipments":
            need(isinstance(doc.get("shipment_id"), str), "shipment_id")
            status = doc.get("status")
            need(status in {"created", "departed", "delayed", "delivered"}, "status")
            need(doc.get("route_id") in _known(world, "routes", "route_id"), "route")
            need(doc.get("origin_dc_id") in _known(world, "distribution_centres", "dc_id"), "dc")
            need(doc.get("destination_store_id") in _known(world, "stores", "store_id"), "store")
            need(doc.get("carrier_id") in _known(world, "carriers", "carrier_id"), "carrier")
            lines = doc.get("lines")
            need(isinstance(lines, list) and len(lines) >= 1, "lines")
            for line in lines or []:
                need(line.get("sku") in skus, "line sku")
                need(_is_int(line.get("quantity")) and line["quantity"] >= 1, "quantity")
            need(_is_iso(doc.get("eta")), "eta")
            need(("delay_minutes" in doc) == (status == "delivered"), "delay_minutes presence")
            need(_is_int(doc.get("delay_minutes", 0)), "delay_minutes type")
        elif topic == "logistics.weather":
            need(doc.get("region") in REGIONS, "region")
            need(doc.get("kind") in {"observation", "alert"}, "kind")
            need(doc.get("condition") in CONDITIONS, "condition")
            need(_is_int(doc.get("severity")) and 0 <= doc["severity"] <= 5, "severity")
            need(_is_number(doc.get("temperature_c")) and -40 < doc["temperature_c"] < 50, "temp")
            need(_is_number(doc.get("wind_kph")) and doc["wind_kph"] >= 0, "wind")
        elif topic == "logistics.world_events":
            need(isinstance(doc.get("world_event_id"), str), "world_event_id")
            need(doc.get("region") in REGIONS, "region")
            need(
                doc.get("kind") in {"strike", "port_closure", "holiday", "protest", "road_closure"},
                "kind",
            )
            need(_is_int(doc.get("severity")) and 1 <= doc["severity"] <= 5, "severity")
            need(_is_iso(doc.get("starts_at")) and _is_iso(doc.get("ends_at")), "span")
            if not problems:
                need(doc["ends_at"] > doc["starts_at"], "ends before it starts")
    except (AttributeError, KeyError, TypeError) as exc:  # e.g. lines of the wrong type
        problems.append(f"unreadable: {exc!r}")
    return problems


_KNOWN: dict[tuple[int, str, str], frozenset[str]] = {}


def _known(world: World, table: str, column: str) -> frozenset[str]:
    key = (id(world), table, column)
    if key not in _KNOWN:
        _KNOWN[key] = frozenset(world.tables()[table][column])
    return _KNOWN[key]


@pytest.fixture(scope="session")
def contract():
    """`contract(world, topic, doc) -> list[str]` of problems with a parsed value."""
    return contract_problems


@pytest.fixture(scope="session")
def make_run():
    """`make_run(world, batch_sizes, parse=True, **generator_kwargs) -> Run`."""
    return run_generator
