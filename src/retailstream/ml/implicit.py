"""Implicit-feedback recommendations: ALS on what customers do (clicks, orders, good ratings).

A customer rates a few items but views, wishlists, carts and orders many more;
each of those says something about their taste. Here every such act becomes a
signal with a weight (`ml.recommender.signal_weights`), summed per (customer,
sku) into a strength, and ALS with `implicitPrefs` learns preferences from
them: high strength = confident "likes", absence = weak "does not care".

The model predicts preference, not stars, so it is chosen and judged on
rankings (NDCG@k against the held-out good ratings), never RMSE. Signals are
cut at the same instants as the ratings' time split (`Split.validation_start`,
`Split.holdout_start`): a model is never fitted on acts that happened after the
ratings it is judged on. All functions are pure DataFrame transforms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import StringIndexer
from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from retailstream.ml import recommender as rec

SIGNAL_COLUMNS = ("customer_id", "sku", "weight", "event_time")


def signals(
    clicks: DataFrame,
    orders: DataFrame,
    ratings: DataFrame,
    weights: Mapping[str, float],
    relevant_stars: float,
) -> DataFrame:
    """Every act as (customer_id, sku, weight, event_time): clicks weighted by their
    action, each ordered line by `order`, each rating of at least `relevant_stars` by
    `rating`. Acts with no weight (or weight 0) and anonymous clicks are left out."""
    by_action = F.create_map(*[F.lit(x) for pair in weights.items() for x in pair])
    clicked = clicks.where(F.col("customer_id").isNotNull()).select(
        "customer_id", "sku", by_action[F.col("action")].alias("weight"), "event_time"
    )
    ordered = orders.select(
        "customer_id", F.explode("lines.sku").alias("sku"),
        F.lit(float(weights.get("order", 0.0))).alias("weight"), "event_time",
    )  # fmt: skip
    rated = ratings.where(F.col("stars") >= relevant_stars).select(
        "customer_id", "sku", F.lit(float(weights.get("rating", 0.0))).alias("weight"), "event_time"
    )
    every = clicked.unionByName(ordered).unionByName(rated)
    return every.where(F.col("weight").isNotNull() & (F.col("weight") > 0))


def strengths(acts: DataFrame, before: float) -> DataFrame:
    """Summed weight per (customer_id, sku) of the acts before `before` (epoch seconds)."""
    earlier = acts.where(F.col("event_time").cast("double") < F.lit(before))
    return earlier.groupBy("customer_id", "sku").agg(F.sum("weight").alias("strength"))


def implicit_pipeline(
    rank: int, reg_param: float, max_iter: int, seed: int, alpha: float
) -> Pipeline:
    """Index customers and skus, then implicit ALS on `strength`; `prediction` is a
    preference score (higher = more likely liked), comparable within a customer."""
    return Pipeline(
        stages=[
            StringIndexer(inputCol="customer_id", outputCol="user", handleInvalid="keep"),
            StringIndexer(inputCol="sku", outputCol="item", handleInvalid="keep"),
            ALS(
                userCol="user", itemCol="item", ratingCol="strength", implicitPrefs=True,
                alpha=alpha, rank=rank, regParam=reg_param, maxIter=max_iter, seed=seed,
                coldStartStrategy="drop", nonnegative=True,
            ),
        ]
    )  # fmt: skip


@dataclass(frozen=True)
class RankingTrial:
    """One point of the grid and the rankings it gave on the validation ratings."""

    rank: int
    reg_param: float
    validation_ndcg: float
    validation_precision: float


def grid_search(
    train_strengths: DataFrame,
    validation: DataFrame,
    rated_before: DataFrame,
    ranks: Sequence[int],
    reg_params: Sequence[float],
    max_iter: int,
    seed: int,
    alpha: float,
    relevant_stars: float,
    k: int,
) -> list[RankingTrial]:
    """Fit on `train_strengths` per (rank, regParam); rank each validation customer's
    unrated items and score the lists against their validation ratings; best NDCG first."""
    customers = validation.select("customer_id").distinct()
    trials = []
    for rank in ranks:
        for reg_param in reg_params:
            model = implicit_pipeline(rank, reg_param, max_iter, seed, alpha).fit(train_strengths)
            lists = rec.recommend(model, customers, rated_before, k)
            found = rec.ranking_metrics(lists, validation, relevant_stars, k)
            trials.append(
                RankingTrial(rank, reg_param, found[f"ndcg_at_{k}"], found[f"precision_at_{k}"])
            )
    return sorted(trials, key=lambda t: (math.isnan(t.validation_ndcg), -t.validation_ndcg))


def fit(
    strength: DataFrame, trial: RankingTrial, max_iter: int, seed: int, alpha: float
) -> PipelineModel:
    return implicit_pipeline(trial.rank, trial.reg_param, max_iter, seed, alpha).fit(strength)
