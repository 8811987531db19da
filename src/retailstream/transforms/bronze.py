"""Kafka records -> bronze event-store rows (pure; batch and streaming alike)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

BRONZE_PARTITIONS = ("topic", "kafka_date")


def to_bronze(records: DataFrame) -> DataFrame:
    """One bronze row per Kafka record, the raw key and value kept as bytes.

    Expects the columns of Spark's Kafka source. Nothing is parsed here, so no
    value (invalid JSON, binary, empty, huge) can be rejected. `kafka_date`
    comes from the Kafka timestamp, not the ingest time, so that a rebuild
    puts every record in the same partition as the first ingest did.
    """
    return records.select(
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("key"),
        F.col("value"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.current_timestamp().alias("ingest_time"),
        F.to_date(F.col("timestamp")).alias("kafka_date"),
    )
