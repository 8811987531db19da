"""Product recommendations: item and customer biases with ALS tastes on explicit ratings, a
popularity baseline, and their metrics.

Ratings have `customer_id`, `sku`, `stars` and `event_time` (silver ratings or
`ratings_input.read_ratings`). Everything here is a DataFrame -> DataFrame (or
-> number) function; reading tables, MLflow and writing results are the job's
(`jobs.train_recommender`).

Splits are by time, as the model will be used: it learns from the past and is
judged on ratings given after everything it saw. Ranking metrics count a
held-out rating of at least `relevant_stars` as a hit, over the customers the
model knows (it cannot rank for a stranger; strangers get the popular items).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from pyspark.ml import PipelineModel
from pyspark.ml.evaluation import RegressionEvaluator
from pyspark.ml.feature import SQLTransformer, StringIndexer, TargetEncoder, TargetEncoderModel
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

RATING_COLUMNS = ("customer_id", "sku", "stars", "event_time")


# Shrinkage of the item and customer biases: a bias is the mean of its ratings' deviations
# as if it had this many more ratings of no deviation. On generated tastes (about 25
# ratings per customer, 100 per item) 5, 10 and 25 gave holdout RMSEs within 0.003.
BIAS_SMOOTHING = 10.0
# The column of a biased model's item means: how `ranking_als` finds their stage.
ITEM_MEAN = "item_mean"


def fit_als(
    ratings: DataFrame, rank: int, reg_param: float, max_iter: int, seed: int
) -> PipelineModel:
    """Biases first, factors on what they leave: stars = item mean + customer bias +
    taste. Predicts from (customer_id, sku) alone; rows of an id it never saw get no
    prediction (dropped).

    - item mean: the sku's mean stars, shrunk towards the overall mean
      (`BIAS_SMOOTHING`);
    - customer bias: the customer's mean deviation from those item means, shrunk
      towards the mean deviation of all ratings (about none);
    - taste: ALS on the stars less both.

    A factor model alone spends its factors, under strong regularisation, on what a
    mean per item and per customer says directly: ALS on centred stars lost to the item
    mean (holdout RMSE 0.952 against 0.933 at 100k ratings).
    """

    def encoder(column: str, label: str, output: str) -> TargetEncoder:
        return TargetEncoder(
            inputCol=column, outputCol=output, labelCol=label, targetType="continuous",
            smoothing=BIAS_SMOOTHING, handleInvalid="keep",
        )  # fmt: skip

    stars = ratings.withColumn("stars", F.col("stars").cast("double"))
    users = StringIndexer(inputCol="customer_id", outputCol="user", handleInvalid="keep").fit(stars)
    items = StringIndexer(inputCol="sku", outputCol="item", handleInvalid="keep").fit(stars)
    indexed = items.transform(users.transform(stars))
    item_means = encoder("item", "stars", ITEM_MEAN).fit(indexed)
    after_items = item_means.transform(indexed).withColumn(
        "after_item", F.col("stars") - F.col(ITEM_MEAN)
    )
    customer_biases = encoder("user", "after_item", "customer_bias").fit(after_items)
    taste = customer_biases.transform(after_items).withColumn(
        "taste", F.col("after_item") - F.col("customer_bias")
    )
    als = ALS(
        userCol="user", itemCol="item", ratingCol="taste", rank=rank, regParam=reg_param,
        maxIter=max_iter, seed=seed, coldStartStrategy="drop",
    ).setPredictionCol("offset").fit(taste)  # fmt: skip
    total = SQLTransformer(
        statement=f"SELECT *, {ITEM_MEAN} + customer_bias + offset AS prediction FROM __THIS__"
    )
    return PipelineModel(stages=[users, items, item_means, customer_biases, als, total])


def mean_stars(ratings: DataFrame) -> float:
    row = ratings.agg(F.avg("stars")).first()
    return float(row[0]) if row and row[0] is not None else 3.0


def rmse(predictions: DataFrame, prediction: str = "prediction") -> float:
    """Root mean squared error of `prediction` against `stars` (NaN when there are no rows)."""
    if predictions.isEmpty():
        return math.nan
    evaluator = RegressionEvaluator(labelCol="stars", predictionCol=prediction, metricName="rmse")
    return float(evaluator.evaluate(predictions))


def item_mean_predictions(train: DataFrame, rows: DataFrame) -> DataFrame:
    """The baseline's rating prediction: the item's mean stars in `train`, else the global mean."""
    global_mean = mean_stars(train)
    means = train.groupBy("sku").agg(F.avg("stars").alias("item_mean"))
    return rows.join(means, "sku", "left").withColumn(
        "prediction", F.coalesce("item_mean", F.lit(global_mean))
    )


def popular_items(train: DataFrame, relevant_stars: float) -> DataFrame:
    """Items by how many customers rated them well, then by mean stars: (sku, hits, mean_stars)."""
    return train.groupBy("sku").agg(
        F.sum((F.col("stars") >= relevant_stars).cast("long")).alias("hits"),
        F.avg("stars").alias("mean_stars"),
    )


def _most_seen(seen: DataFrame) -> int:
    top = seen.groupBy("customer_id").count().agg(F.max("count")).first()
    return int(top[0]) if top and top[0] is not None else 0


def _top_unseen(candidates: DataFrame, seen: DataFrame, k: int) -> DataFrame:
    """The best `k` candidates (customer_id, sku, score) per customer among skus they have not rated."""
    best_first = Window.partitionBy("customer_id").orderBy(F.desc("score"), F.asc("sku"))
    return (
        candidates.join(
            seen.select("customer_id", "sku").distinct(), ["customer_id", "sku"], "anti"
        )
        .withColumn("rank", F.row_number().over(best_first))
        .where(F.col("rank") <= k)
        .select("customer_id", "rank", "sku", "score")
    )


def ranking_als(model: PipelineModel) -> ALSModel:
    """The ALS of `model`, for a model with biases (`fit_als`) with its item means
    folded into the factors: a factor of 1 for every customer, the item's mean for every
    item. Its dot product u.v + item mean orders a customer's items as the predicted
    stars do, and ALS's own top-k search finds them (the customer's bias is the same for
    every item)."""
    (als,) = [stage for stage in model.stages if isinstance(stage, ALSModel)]
    means = [
        stage for stage in model.stages
        if isinstance(stage, TargetEncoderModel) and stage.getOutputCol() == ITEM_MEAN
    ]  # fmt: skip
    if not means:
        return als
    items = (
        means[0]
        .transform(als.itemFactors.withColumn("item", F.col("id").cast("double")))
        .select(
            "id", F.concat("features", F.array(F.col(ITEM_MEAN).cast("float"))).alias("features")
        )
    )
    users = als.userFactors.select(
        "id", F.concat("features", F.array(F.lit(1.0).cast("float"))).alias("features")
    )
    jvm = items.sparkSession.sparkContext._jvm
    assert jvm is not None, "a running SparkContext has its JVM gateway"
    # ALSModel's constructor is Scala-private to Spark's ml package, which the JVM allows
    # from here. A model built so has no column defaults: the indexers' columns.
    folded = jvm.org.apache.spark.ml.recommendation.ALSModel(
        als.uid, als.rank + 1, users._jdf, items._jdf
    )
    folded.setUserCol("user").setItemCol("item")
    return ALSModel(folded)


def recommend(model: PipelineModel, customers: DataFrame, seen: DataFrame, k: int) -> DataFrame:
    """Top `k` skus per known customer of `customers` that they have not rated:
    (customer_id, rank, sku, score), score = predicted stars less the customer's bias
    (same order; for a model without biases, its ALS score).

    ALS ranks every item; asking it for `k` plus the most items any customer has
    rated guarantees `k` unseen ones after the seen are removed.
    """
    users_index, items_index = model.stages[0], model.stages[1]
    als = ranking_als(model)
    users = users_index.transform(customers.select("customer_id").distinct()).where(
        F.col("user") < len(users_index.labels)  # type: ignore[attr-defined]
    )
    labels = items_index.labels  # type: ignore[attr-defined]
    spark = customers.sparkSession
    skus = spark.createDataFrame(list(enumerate(labels)), "item int, sku string")
    wanted = min(len(labels), k + _most_seen(seen))
    raw = als.recommendForUserSubset(users.select(F.col("user").cast("int").alias("user")), wanted)
    ids = users.select(F.col("user").cast("int").alias("user"), "customer_id")
    candidates = (
        raw.join(ids, "user")
        .select("customer_id", F.explode("recommendations").alias("r"))
        .select("customer_id", F.col("r.item").alias("item"), F.col("r.rating").alias("score"))
        .join(F.broadcast(skus), "item")
        .drop("item")
    )
    return _top_unseen(candidates, seen, k)


def recommend_popular(
    customers: DataFrame, seen: DataFrame, popular: DataFrame, k: int
) -> DataFrame:
    """The baseline's top `k` per customer: the most popular skus they have not rated."""
    wanted = k + _most_seen(seen)
    ordered = popular.orderBy(F.desc("hits"), F.desc("mean_stars"), F.asc("sku")).limit(wanted)
    ranked = ordered.withColumn("score", F.col("hits").cast("double")).select("sku", "score")
    candidates = customers.select("customer_id").distinct().crossJoin(F.broadcast(ranked))
    return _top_unseen(candidates, seen, k)


def ranking_metrics(
    recommendations: DataFrame, holdout: DataFrame, relevant_stars: float, k: int
) -> dict[str, float]:
    """precision@k and NDCG@k (binary relevance) of (customer_id, rank, sku) lists,
    averaged over the customers that have recommendations and a relevant held-out rating."""
    relevant = (
        holdout.where(F.col("stars") >= relevant_stars).select("customer_id", "sku").distinct()
    )
    judged = relevant.groupBy("customer_id").agg(F.count("*").alias("relevant"))
    listed = recommendations.where(F.col("rank") <= k)
    users = judged.join(listed.select("customer_id").distinct(), "customer_id")
    hits = (
        listed.join(relevant, ["customer_id", "sku"])
        .groupBy("customer_id")
        .agg(
            F.count("*").alias("hits"),
            F.sum(1.0 / F.log2(F.col("rank") + 1.0)).alias("dcg"),
        )
    )
    # Ideal DCG: all min(relevant, k) hits at the top.
    ideal = F.aggregate(
        F.sequence(F.lit(1), F.least(F.col("relevant"), F.lit(k))),
        F.lit(0.0),
        lambda acc, i: acc + 1.0 / F.log2(i + 1.0),
    )
    per_user = users.join(hits, "customer_id", "left").select(
        (F.coalesce("hits", F.lit(0)) / F.lit(k)).alias("precision"),
        (F.coalesce("dcg", F.lit(0.0)) / ideal).alias("ndcg"),
    )
    row = per_user.agg(
        F.avg("precision").alias("precision"), F.avg("ndcg").alias("ndcg"), F.count("*")
    ).first()
    assert row is not None
    count = int(row[2])
    return {
        f"precision_at_{k}": float(row["precision"]) if count else math.nan,
        f"ndcg_at_{k}": float(row["ndcg"]) if count else math.nan,
        "ranked_customers": float(count),
    }


def oracle_rmse(holdout: DataFrame, rating_truth: DataFrame) -> float:
    """RMSE of the generator's expected stars (its true tastes) on the held-out ratings:
    the best any model can do in expectation on generated data."""
    truth = rating_truth.select("event_id", "true_score")
    return rmse(holdout.join(truth, "event_id"), prediction="true_score")


@dataclass(frozen=True)
class Trial:
    """One point of the hyperparameter grid and its validation RMSE."""

    rank: int
    reg_param: float
    validation_rmse: float


def grid_search(
    train: DataFrame,
    validation: DataFrame,
    ranks: Sequence[int],
    reg_params: Sequence[float],
    max_iter: int,
    seed: int,
) -> list[Trial]:
    """Fit ALS on `train` for each (rank, regParam) and score it on `validation`, best first."""
    trials = []
    for rank in ranks:
        for reg_param in reg_params:
            model = fit_als(train, rank, reg_param, max_iter, seed)
            trials.append(Trial(rank, reg_param, rmse(model.transform(validation))))
    return sorted(trials, key=lambda t: (math.isnan(t.validation_rmse), t.validation_rmse))
