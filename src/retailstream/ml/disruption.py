"""Supply-chain disruption: will a departed shipment arrive more than a margin after its ETA?

Learns from `silver/shipments_enriched` (one row per departure with the route,
carrier, weather at both ends and the world events active at departure) and
the delivered records of `silver/shipments` (how late each one was). Pure
DataFrame functions; reading, MLflow and writing are the jobs'.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.ml import Pipeline
from pyspark.ml.classification import GBTClassifier
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import StringIndexer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

NUMERIC = (
    "origin_weather_severity",
    "destination_weather_severity",
    "world_event_severity",
    "carrier_reliability",
    "distance_km",
    "lead_time_hours",
    "line_count",
    "units",
    "departure_hour",
    "departure_weekday",
)
CATEGORICAL = ("carrier_id", "origin_region", "destination_region")


def features(departures: DataFrame) -> DataFrame:
    """`departures` with the time features and the numeric inputs as doubles (no gaps)."""
    return departures.withColumns(
        {
            "departure_hour": F.hour("departed_at").cast("double"),
            "departure_weekday": F.dayofweek("departed_at").cast("double"),
            **{c: F.coalesce(F.col(c).cast("double"), F.lit(0.0)) for c in NUMERIC[:-2]},
        }
    )


def labelled(enriched: DataFrame, shipments: DataFrame, margin_minutes: int) -> DataFrame:
    """Departures whose delivery is known, with `late` = 1.0 when delivered more than
    `margin_minutes` after the ETA (the label), else 0.0."""
    delivered = (
        shipments.where(F.col("status") == "delivered")
        .groupBy("shipment_id")
        .agg(F.max("delay_minutes").alias("delay_minutes"))
    )
    return features(enriched.join(delivered, "shipment_id")).withColumn(
        "late", (F.col("delay_minutes") > margin_minutes).cast("double")
    )


def gbt_pipeline(max_iter: int, max_depth: int, seed: int) -> Pipeline:
    """Index the categories, assemble the features, gradient-boosted trees on `late`."""
    indexed = [f"{c}_index" for c in CATEGORICAL]
    return Pipeline(
        stages=[
            StringIndexer(inputCols=list(CATEGORICAL), outputCols=indexed, handleInvalid="keep"),
            VectorAssembler(inputCols=[*NUMERIC, *indexed], outputCol="features"),
            GBTClassifier(
                labelCol="late",
                featuresCol="features",
                maxIter=max_iter,
                maxDepth=max_depth,
                seed=seed,
                maxBins=64,
            ),
        ]
    )


def late_probability(predictions: DataFrame) -> Column:
    """P(late) from a classifier's `probability` vector."""
    return vector_to_array(predictions["probability"])[1]


def aucs(scored: DataFrame, score: str, label: str = "late") -> dict[str, float]:
    """ROC-AUC and PR-AUC of `score` against `label` (NaN without both classes)."""
    classes = scored.select(label).distinct().count()
    if classes < 2:
        return {"roc_auc": math.nan, "pr_auc": math.nan}
    evaluator = BinaryClassificationEvaluator(labelCol=label, rawPredictionCol=score)
    return {
        "roc_auc": float(evaluator.setMetricName("areaUnderROC").evaluate(scored)),
        "pr_auc": float(evaluator.setMetricName("areaUnderPR").evaluate(scored)),
    }


def carrier_baseline(train: DataFrame, rows: DataFrame) -> DataFrame:
    """The baseline's score: the carrier's late rate in `train` (overall rate for a new one)."""
    overall = train.agg(F.avg("late")).first()
    rate = float(overall[0]) if overall and overall[0] is not None else 0.0
    by_carrier = train.groupBy("carrier_id").agg(F.avg("late").alias("carrier_late_rate"))
    return rows.join(F.broadcast(by_carrier), "carrier_id", "left").withColumn(
        "baseline_score", F.coalesce("carrier_late_rate", F.lit(rate))
    )


@dataclass(frozen=True)
class Trial:
    max_iter: int
    max_depth: int
    validation_pr_auc: float


def grid_search(
    train: DataFrame,
    validation: DataFrame,
    iterations: Sequence[int],
    depths: Sequence[int],
    seed: int,
) -> list[Trial]:
    """Fit the pipeline for each (maxIter, maxDepth), score PR-AUC on `validation`, best first."""
    trials = []
    for max_iter in iterations:
        for max_depth in depths:
            model = gbt_pipeline(max_iter, max_depth, seed).fit(train)
            scored = model.transform(validation)
            scored = scored.withColumn("p_late", late_probability(scored))
            trials.append(Trial(max_iter, max_depth, aucs(scored, "p_late")["pr_auc"]))
    return sorted(trials, key=lambda t: (math.isnan(t.validation_pr_auc), -t.validation_pr_auc))


# Readable reasons for an alert, checked against the inputs of the departure,
# most severe first: a gradient-boosted model has no per-row explanation, and
# these are the conditions it learns to weigh.
REASONS = (
    ("world_event_severity", 2.0, "world event (severity {v:.0f}) on the route"),
    ("destination_weather_severity", 3.0, "severe weather at destination (severity {v:.0f})"),
    ("origin_weather_severity", 3.0, "severe weather at origin (severity {v:.0f})"),
    ("carrier_reliability", -0.9, "unreliable carrier ({v:.0%} on time)"),
    ("distance_km", 1500.0, "long route ({v:,.0f} km)"),
)


def reasons(row: dict) -> list[str]:
    """The conditions of a departure that make lateness likely, for people (pure)."""
    found = []
    for column, threshold, text in REASONS:
        value = row.get(column)
        if value is None:
            continue
        hit = value <= -threshold if threshold < 0 else value >= threshold
        if hit:
            found.append(text.format(v=value))
    return found
