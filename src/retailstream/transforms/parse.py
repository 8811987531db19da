"""Bronze records -> typed events of one topic, never failing on a bad value (pure).

Each value is parsed once, as a JSON object into a map of field -> raw text
(nested lines come back as their JSON text). Every contract field is then
try-cast from its raw text, so that a field that does not parse becomes a
reason on its row instead of an error (Spark 4 runs with ANSI mode, where a
plain cast would fail the query). Fields the contract does not know are kept
in `_rescued` as JSON. Older or newer `schema_version`s are brought to the
current shape by upcasters before typing.
"""

from __future__ import annotations

from collections.abc import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType, StringType

from retailstream.schemas import (
    COORDINATE_FIELDS,
    SPARK_TYPES,
    EventContract,
    Field,
    lines_type,
    silver_schema,
)
from retailstream.transforms.columns import present

RAW_MAP = MapType(StringType(), StringType())
RAW_LINES = ArrayType(MapType(StringType(), StringType()))

# Upcasters: (topic, schema_version) -> a function of the raw field map that
# returns it in the current version's shape. Adding one keeps every query's
# checkpoint valid: parsing is stateless and the silver schema is unchanged.
Upcaster = Callable[[Column], Column]


def _ratings_v2(raw: Column) -> Column:
    # Version 2 of shop.ratings names the score `rating` instead of `stars`.
    return F.map_concat(
        F.map_filter(raw, lambda k, _: k != "rating"),
        F.create_map(F.lit("stars"), raw["rating"]),
    )


UPCASTERS: dict[tuple[str, int], Upcaster] = {("shop.ratings", 2): _ratings_v2}


def _typed(raw: Column, field: Field, contract: EventContract) -> Column:
    if field.kind == "lines":
        elements = F.from_json(raw, RAW_LINES)
        return F.transform(
            elements,
            lambda e: F.struct(
                *[
                    e[f.name].try_cast(SPARK_TYPES[f.kind]).alias(f.name)
                    for f in contract.line_fields
                ]
            ),
        ).cast(lines_type(contract))
    return raw.try_cast(SPARK_TYPES[field.kind])


def _element_does_not_parse(field: Field) -> Callable[[Column], Column]:
    # A named one-argument function: Spark reads a lambda's arity, so no default args.
    def check(element: Column) -> Column:
        value = element[field.name]
        return value.isNotNull() & value.try_cast(SPARK_TYPES[field.kind]).isNull()

    return check


def _type_errors(raw: Column, contract: EventContract) -> list[Column]:
    """One `field: not <kind>` reason per field whose raw text is present but does not parse."""
    errors = []
    for field in contract.all_fields:
        value = raw[field.name]
        if field.kind == "lines":
            elements = F.from_json(value, RAW_LINES)
            not_a_list = value.isNotNull() & elements.isNull()
            errors.append(F.when(not_a_list, F.lit("lines: not a list of objects")))
            for f in contract.line_fields:
                bad = F.exists(elements, _element_does_not_parse(f))
                errors.append(F.when(bad, F.lit(f"lines.{f.name}: not {f.kind}")))
        else:
            bad = value.isNotNull() & value.try_cast(SPARK_TYPES[field.kind]).isNull()
            errors.append(F.when(bad, F.lit(f"{field.name}: not {field.kind}")))
    return errors


def _upcast(raw: Column, topic: str) -> Column:
    result = raw
    version = raw["schema_version"].try_cast("int")
    for (upcaster_topic, from_version), upcaster in sorted(UPCASTERS.items()):
        if upcaster_topic == topic:
            result = F.when(version == from_version, upcaster(result)).otherwise(result)
    return result


def _line_minimum(name: str) -> Column:
    """The smallest `name` over the lines; null if any line lacks it (array_min skips
    nulls, which would let a line without a quantity pass the range expectation)."""
    values = F.transform("lines", lambda line: line[name])
    return F.when(~F.exists(values, lambda v: v.isNull()), F.array_min(values))


def parse_events(bronze: DataFrame, contract: EventContract) -> DataFrame:
    """Typed rows of `contract.topic` with their parse reasons.

    Expects bronze columns (topic, partition, offset, key, value,
    kafka_timestamp). Returns the columns of `silver_schema(contract.table)`
    plus `key`, `value` (kept for the quarantine), `parse_errors`
    (array<string>, empty when the value parsed), `_dedup_key` (the event id,
    or the bronze coordinates when there is none) and `_wm_time` (the Kafka
    timestamp, the watermark column of deduplication).
    """
    text = F.col("value").cast("string")
    empty = F.col("value").isNotNull() & (F.length("value") == 0)
    utf8 = F.is_valid_utf8(text)
    # The JSON is parsed in a projection of its own: used twice in one projection,
    # once inside a CASE branch, it was parsed two or three times a row.
    parsed = F.col("_parsed")
    kept = [*[F.col(c.name) for c in COORDINATE_FIELDS], F.col("key"), F.col("value")]
    rows = (
        bronze.where(F.col("topic") == contract.topic)
        .select(*kept, raw_fields(F.col("value")).alias("_parsed"))
        .select(
            *kept,
            _upcast(parsed, contract.topic).alias("_raw"),
            F.when(F.col("value").isNull(), F.lit("null_value"))
            .when(empty, F.lit("empty_value"))
            .when(~utf8, F.lit("not_utf8"))
            .when(parsed.isNull(), F.lit("invalid_json"))
            .alias("_value_error"),
        )
    )
    raw = F.col("_raw")
    known = F.array(*[F.lit(name) for name in contract.field_names])
    # Whether a row has unknown fields is a compiled set difference of its keys; only
    # the rare rows that do pay for map_filter, which Spark evaluates interpreted.
    has_extra = F.size(F.array_except(F.map_keys(raw), known)) > 0
    extra = F.map_filter(raw, lambda k, _: ~F.array_contains(known, k))
    typed = [_typed(raw[f.name], f, contract).alias(f.name) for f in contract.all_fields]
    errors = present(F.col("_value_error"), *_type_errors(raw, contract))
    with_fields = rows.select(
        "*",
        *typed,
        F.when(has_extra, F.to_json(extra)).alias("_rescued"),
        errors.alias("parse_errors"),
    )
    derived = [
        ((F.unix_micros("kafka_timestamp") - F.unix_micros("event_time")) / 1e6).alias(
            "event_lag_seconds"
        )
    ]
    if contract.line_fields:
        derived += [
            F.size("lines").cast("int").alias("line_count"),
            _line_minimum("quantity").alias("min_line_quantity"),
        ]
        if any(f.name == "unit_price" for f in contract.line_fields):
            derived.append(_line_minimum("unit_price").alias("min_line_unit_price"))
        else:
            derived.append(F.lit(None).cast("double").alias("min_line_unit_price"))
        derived.append(F.lit(None).cast("int").alias("unknown_line_skus"))
    # `line_count` is null for a null `lines`; size() returns -1 there.
    result = with_fields.select("*", *derived)
    if contract.line_fields:
        result = result.withColumn(
            "line_count", F.when(F.col("lines").isNotNull(), F.col("line_count"))
        )
    columns = [field.name for field in silver_schema(contract.table).fields]
    return result.select(
        *columns,
        "key",
        "value",
        "parse_errors",
        dedup_key(F.col("_raw")["event_id"]).alias("_dedup_key"),
        F.col("kafka_timestamp").alias("_wm_time"),
    )


def raw_fields(value: Column) -> Column:
    """A record's value as a map of field -> raw text; null when it is not a JSON
    object in UTF-8 (empty, binary, invalid)."""
    # from_json takes a MapType too, which pyspark's annotations leave out.
    return F.when(_readable(value), F.from_json(value.cast("string"), RAW_MAP))  # type: ignore[arg-type]


def _readable(value: Column) -> Column:
    """Whether a value is worth reading as JSON: UTF-8 text that is not empty."""
    return F.is_valid_utf8(value.cast("string")) & ~(value.isNotNull() & (F.length(value) == 0))


def dedup_key(event_id: Column) -> Column:
    """What deduplication compares: the event id's text, or the record's bronze
    coordinates when it has none (so a record without an id is never taken for another)."""
    coordinates = F.concat_ws(
        ":", F.col("topic"), F.col("partition").cast("string"), F.col("offset").cast("string")
    )
    return F.coalesce(event_id, coordinates)


def event_id_text(value: Column) -> Column:
    """A record's `event_id` as `raw_fields(value)["event_id"]` gives it, without
    building the map: a streaming read of the one field, half the cost of the map.

    Both give null for a value that is not one whole JSON object in UTF-8, the text
    of a non-string id, and the first of repeated keys (tests/unit/test_parse_events).
    """
    return F.when(_readable(value), F.get_json_object(value.cast("string"), "$.event_id"))


def drop_duplicate_events(records: DataFrame, delay: str, keys: tuple[str, ...]) -> DataFrame:
    """The streaming deduplication of refine and the serving path: the first record of
    each `keys` (`_dedup_key`, with `topic` when topics are mixed) within `delay`.

    State is kept by arrival time (`_wm_time`, the Kafka timestamp), not event
    time: a record dated in the future cannot push the watermark ahead and drop
    good events, and an old-dated one is judged by the lateness expectation
    (quarantined with its raw value) instead of vanishing behind the watermark.
    """
    return records.withWatermark("_wm_time", delay).dropDuplicatesWithinWatermark(list(keys))
