"""The simulated retailer: reference data and a causal, deterministic event generator.

    world = build_world(seed=7, scale="demo")            # dimension tables + hidden state
    gen = EventGenerator(world, seed=7, start=datetime(2025, 3, 3, tzinfo=timezone.utc))
    batch = gen.next_batch(100_000)                      # KafkaRecords + ground truth
    batch.records[0]                                     # KafkaRecord(topic, key, value)
    batch.truth_frames()["shipment_truth"]               # what really caused each delay

Pure Python and numpy: no Spark, no Kafka. Producing the records and storing the truth is
the caller's job.
"""

from retailstream.world.defects import DefectRates
from retailstream.world.generator import EventGenerator
from retailstream.world.records import (
    EVENT_TYPES,
    KEY_FIELDS,
    SCHEMA_VERSION,
    TOPICS,
    TRUTH_SCHEMAS,
    EventBatch,
    KafkaRecord,
    truth_frame,
)
from retailstream.world.reference import Scale, World, build_world
from retailstream.world.scores import best_achievable_scores, expected_stars
from retailstream.world.shipments import delay_probability

__all__ = [
    "EVENT_TYPES",
    "KEY_FIELDS",
    "SCHEMA_VERSION",
    "TOPICS",
    "TRUTH_SCHEMAS",
    "DefectRates",
    "EventBatch",
    "EventGenerator",
    "KafkaRecord",
    "Scale",
    "World",
    "best_achievable_scores",
    "build_world",
    "delay_probability",
    "expected_stars",
    "truth_frame",
]
