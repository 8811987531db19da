"""Event and table contracts: what each topic's JSON holds and what its silver table is.

The event JSON of every topic (DESIGN.md section 2) has `event_id`,
`event_type`, `schema_version` and `event_time`, then the fields of its
contract below. Silver tables hold the typed fields plus the record's bronze
coordinates, a few derived columns the expectations need, and `_rescued`
(the JSON of fields the contract does not know, kept instead of dropped).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    DataType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

Kind = Literal["string", "int", "double", "timestamp", "lines"]

SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(),
    "int": IntegerType(),
    "double": DoubleType(),
    "timestamp": TimestampType(),
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    # Required fields missing from an event quarantine it (not-null expectation);
    # optional ones may be absent or null.
    required: bool = True


@dataclass(frozen=True)
class EventContract:
    topic: str
    table: str
    key_field: str
    fields: tuple[Field, ...]
    # The element fields of `lines`, for topics whose events carry lines.
    line_fields: tuple[Field, ...] = ()

    @property
    def all_fields(self) -> tuple[Field, ...]:
        return COMMON_FIELDS + self.fields

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.all_fields)


COMMON_FIELDS = (
    Field("event_id", "string"),
    Field("event_type", "string"),
    Field("schema_version", "int"),
    Field("event_time", "timestamp"),
)
ORDER_LINE_FIELDS = (
    Field("sku", "string"),
    Field("quantity", "int"),
    Field("unit_price", "double"),
)
SHIPMENT_LINE_FIELDS = (Field("sku", "string"), Field("quantity", "int"))

CONTRACTS: dict[str, EventContract] = {
    c.topic: c
    for c in (
        EventContract(
            "shop.clickstream",
            "clickstream",
            "session_id",
            (
                Field("session_id", "string"),
                Field("customer_id", "string"),
                Field("sku", "string"),
                Field("action", "string"),
                Field("channel", "string"),
            ),
        ),
        EventContract(
            "shop.orders",
            "orders",
            "order_id",
            (
                Field("order_id", "string"),
                Field("customer_id", "string"),
                Field("store_id", "string", required=False),  # null for online orders
                Field("channel", "string"),
                Field("lines", "lines"),
                Field("total", "double"),
                Field("currency", "string"),
            ),
            ORDER_LINE_FIELDS,
        ),
        EventContract(
            "shop.ratings",
            "ratings",
            "sku",
            (Field("customer_id", "string"), Field("sku", "string"), Field("stars", "int")),
        ),
        EventContract(
            "logistics.shipments",
            "shipments",
            "shipment_id",
            (
                Field("shipment_id", "string"),
                Field("status", "string"),
                Field("route_id", "string"),
                Field("origin_dc_id", "string"),
                Field("destination_store_id", "string"),
                Field("carrier_id", "string"),
                Field("lines", "lines"),
                Field("eta", "timestamp"),
                Field("delay_minutes", "int", required=False),  # on delivered only
            ),
            SHIPMENT_LINE_FIELDS,
        ),
        EventContract(
            "logistics.weather",
            "weather",
            "region",
            (
                Field("region", "string"),
                Field("kind", "string"),
                Field("condition", "string"),
                Field("severity", "int"),
                Field("temperature_c", "double"),
                Field("wind_kph", "double"),
            ),
        ),
        EventContract(
            "logistics.world_events",
            "world_events",
            "region",
            (
                Field("world_event_id", "string"),
                Field("region", "string"),
                Field("kind", "string"),
                Field("severity", "int"),
                Field("starts_at", "timestamp"),
                Field("ends_at", "timestamp"),
            ),
        ),
    )
}
CONTRACTS_BY_TABLE = {c.table: c for c in CONTRACTS.values()}

# Bronze coordinates every silver and quarantine row carries (the event store's address).
COORDINATE_FIELDS = (
    StructField("topic", StringType(), False),
    StructField("partition", IntegerType(), False),
    StructField("offset", LongType(), False),
    StructField("kafka_timestamp", TimestampType(), True),
)

# Columns derived during parsing for the expectations (see quality/).
DERIVED_FIELDS = (
    # kafka_timestamp - event_time: negative = from the future, large = late.
    StructField("event_lag_seconds", DoubleType(), True),
    # For events with lines: how many, and the smallest quantity and unit price.
    StructField("line_count", IntegerType(), True),
    StructField("min_line_quantity", IntegerType(), True),
    StructField("min_line_unit_price", DoubleType(), True),
    # Lines whose sku is not in the reference products (filled during validation).
    StructField("unknown_line_skus", IntegerType(), True),
)


def lines_type(contract: EventContract) -> ArrayType:
    return ArrayType(
        StructType([StructField(f.name, SPARK_TYPES[f.kind], True) for f in contract.line_fields])
    )


def event_fields(contract: EventContract) -> list[StructField]:
    """The typed fields of a topic's event JSON, in contract order."""
    return [
        StructField(
            f.name, lines_type(contract) if f.kind == "lines" else SPARK_TYPES[f.kind], True
        )
        for f in contract.all_fields
    ]


def silver_schema(table: str) -> StructType:
    """The typed silver table of one topic (before and after quarantine: same columns)."""
    contract = CONTRACTS_BY_TABLE[table]
    typed = event_fields(contract)
    # The line summaries exist only for topics whose events carry lines.
    derived = DERIVED_FIELDS if contract.line_fields else DERIVED_FIELDS[:1]
    return StructType(
        [*COORDINATE_FIELDS, *typed, *derived, StructField("_rescued", StringType(), True)]
    )


QUARANTINE_SCHEMA = StructType(
    [
        StructField("table", StringType(), False),
        *COORDINATE_FIELDS,
        StructField("key", BinaryType(), True),
        StructField("value", BinaryType(), True),
        StructField("event_id", StringType(), True),
        StructField("reasons", ArrayType(StringType(), False), False),
        StructField("refine_batch_id", LongType(), False),
    ]
)

ORDER_LINES_SCHEMA = StructType(
    [
        StructField("event_id", StringType(), False),
        StructField("order_id", StringType(), False),
        StructField("line_no", IntegerType(), False),
        StructField("sku", StringType(), True),
        StructField("quantity", IntegerType(), True),
        StructField("unit_price", DoubleType(), True),
        StructField("event_time", TimestampType(), True),
        StructField("store_id", StringType(), True),
    ]
)
