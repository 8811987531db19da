"""Train the recommender: ALS on ratings, judged against a popularity baseline, tracked in MLflow.

Reads: silver ratings (the Delta version is logged), or a ratings file a user
brings (`--ratings PATH`: CSV, Parquet, Delta or MovieLens `.dat`); the
customers and products reference tables; the generator's rating truth when
there is one (the best RMSE reachable on generated data).
Writes: one MLflow run (parameters, metrics, the input versions, the
validation plot, the model with its signature and an input example),
registered as a new version of `ml.recommender_model`. The version becomes the
`champion` only if it beats the current champion on this run's holdout; then
its top-k per customer go to `<lake>/gold/recommendations`, the popular items
per region (for customers without history) to `<lake>/gold/popular_by_region`,
and both to the serving store. A version that loses changes nothing served.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.io.delta import write_table
from retailstream.io.truth import read_truth
from retailstream.jobs.launcher import launch
from retailstream.jobs.refine_events import load_references, silver_table
from retailstream.ml import recommender as rec
from retailstream.ml import registry, runs
from retailstream.ml.ratings_input import FORMATS, read_ratings
from retailstream.ml.splits import time_split
from retailstream.views.store import ServingStore, open_store

EXPERIMENT = "recommender"


def silver_ratings(spark: SparkSession, settings: Settings) -> tuple[DataFrame, dict[str, Any]]:
    """Silver ratings pinned to their current Delta version, and that version (lineage)."""
    table, lineage = runs.pinned_table(
        spark, silver_table(settings, "ratings"), "run `retailstream run refine` first"
    )
    columns = ("event_id", "customer_id", "sku", F.col("stars").cast("double"), "event_time")
    return table.select(*columns), lineage


def training_ratings(
    spark: SparkSession, settings: Settings, args: argparse.Namespace
) -> tuple[DataFrame, dict[str, Any]]:
    if args.ratings:
        path = Path(args.ratings)
        ratings = read_ratings(spark, path, args.format)
        return ratings.withColumn("event_id", F.lit(None).cast("string")), {"file": str(path)}
    return silver_ratings(spark, settings)


def plot_validation(trials: Sequence[rec.Trial]) -> Callable[[Any], None]:
    """Validation RMSE per regParam, one line per rank (the grid the run chose from)."""

    def draw(axes: Any) -> None:
        for rank in sorted({t.rank for t in trials}):
            points = sorted((t.reg_param, t.validation_rmse) for t in trials if t.rank == rank)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            axes.plot(xs, ys, marker="o", label=f"rank {rank}")
        axes.set_xscale("log")
        axes.set_xlabel("regParam")
        axes.set_ylabel("validation RMSE")
        axes.legend()

    return draw


def popular_by_region(ratings: DataFrame, customers: DataFrame, settings: Settings) -> DataFrame:
    """Top-k skus per customer home region by well-rated count: (region, rank, sku, hits)."""
    relevant = settings.ml.recommender.relevant_stars
    by_region = (
        ratings.join(
            customers.select("customer_id", F.col("home_region").alias("region")), "customer_id"
        )
        .groupBy("region", "sku")
        .agg(
            F.sum((F.col("stars") >= relevant).cast("long")).alias("hits"),
            F.avg("stars").alias("mean_stars"),
        )
    )
    best = Window.partitionBy("region").orderBy(F.desc("hits"), F.desc("mean_stars"), F.asc("sku"))
    return (
        by_region.withColumn("rank", F.row_number().over(best))
        .where(F.col("rank") <= settings.ml.recommender.top_k)
        .select("region", "rank", "sku", "hits", "mean_stars")
    )


def _documents(rows: DataFrame, key: str, products: DataFrame, extra: dict[str, Any]) -> list[dict]:
    """One store document per `key` value: its ranked items with names (small: top-k each)."""
    named = rows.join(products.select("sku", "name", "category"), "sku", "left")
    grouped: dict[str, list[dict]] = {}
    for row in named.collect():
        item = row.asDict()
        grouped.setdefault(item.pop(key), []).append(item)
    return [
        {key: k, **extra, "items": sorted(items, key=lambda i: i["rank"])}
        for k, items in grouped.items()
    ]


def publish(
    spark: SparkSession,
    settings: Settings,
    store: ServingStore,
    recommendations: DataFrame,
    popular: DataFrame,
    references: dict[str, DataFrame],
    version: str,
) -> int:
    """The champion's lists to gold and the serving store (replaced whole); returns customers."""
    stamped = recommendations.withColumn("model_version", F.lit(version))
    write_table(stamped, settings.lake.table("gold/recommendations"), mode="overwrite")
    write_table(popular, settings.lake.table("gold/popular_by_region"), mode="overwrite")
    products = references["products"]
    store.replace(
        "popular_by_region", _documents(popular, "region", products, {"model_version": version})
    )
    documents = _documents(recommendations, "customer_id", products, {"model_version": version})
    return store.replace("recommendations", documents)


def compare_on_holdout(
    new: PipelineModel, champion: PipelineModel, holdout: DataFrame
) -> tuple[float, float]:
    """(new RMSE, champion RMSE) on the held-out rows both models can score."""
    rows = holdout.withColumn("_row", F.monotonically_increasing_id()).persist()
    mine = new.transform(rows).select("_row", "stars", F.col("prediction").alias("new"))
    theirs = champion.transform(rows).select("_row", F.col("prediction").alias("champion"))
    both = mine.join(theirs, "_row").persist()
    scores = rec.rmse(both, "new"), rec.rmse(both, "champion")
    both.unpersist()
    rows.unpersist()
    return scores


def train(spark: SparkSession, settings: Settings, args: argparse.Namespace) -> int:
    with runs.kept_in_memory() as keep:
        return _train(spark, settings, args, keep)


def _train(
    spark: SparkSession, settings: Settings, args: argparse.Namespace, keep: runs.Kept
) -> int:
    conf = settings.ml.recommender
    ratings, lineage = training_ratings(spark, settings, args)
    ratings = keep(ratings)
    split = time_split(ratings, conf.holdout_fraction, conf.validation_fraction).map(keep)
    train_rows, validation, holdout = split.train, split.validation, split.holdout
    sizes = split.sizes()
    runs.require_rows(sizes, conf.min_ratings, "ratings")
    print(f"ratings by time: {sizes['train']:,} train, {sizes['validation']:,} validation, "
          f"{sizes['holdout']:,} holdout")  # fmt: skip

    trials = rec.grid_search(
        train_rows, validation, conf.ranks, conf.reg_params, conf.max_iter, conf.seed
    )
    best = trials[0]
    print(f"chosen on validation: rank {best.rank}, regParam {best.reg_param} "
          f"(RMSE {best.validation_rmse:.4f}; {len(trials)} tried)")  # fmt: skip
    seen = keep(train_rows.unionByName(validation))
    model = rec.fit_als(seen, best.rank, best.reg_param, conf.max_iter, conf.seed)

    scored = keep(model.transform(holdout))
    baseline_scored = rec.item_mean_predictions(seen, scored.drop("prediction"))
    holdout_customers = holdout.select("customer_id").distinct()
    k = conf.top_k
    popular = rec.popular_items(seen, conf.relevant_stars)
    known = holdout_customers.join(seen.select("customer_id").distinct(), "customer_id")
    model_lists = rec.recommend(model, known, seen, k)
    baseline_lists = rec.recommend_popular(known, seen, popular, k)
    metrics = {
        "holdout_rmse": rec.rmse(scored),
        "baseline_rmse": rec.rmse(baseline_scored),
        "holdout_coverage": scored.count() / sizes["holdout"],
        **rec.ranking_metrics(model_lists, holdout, conf.relevant_stars, k),
        **{
            f"baseline_{name}": value
            for name, value in rec.ranking_metrics(
                baseline_lists, holdout, conf.relevant_stars, k
            ).items()
        },
        "validation_rmse": best.validation_rmse,
    }
    truth = read_truth(spark, settings.lake.root, "rating_truth")
    if truth is not None and not args.ratings:
        metrics["oracle_rmse"] = rec.oracle_rmse(scored, truth)

    import mlflow
    import mlflow.spark

    name = settings.ml.recommender_model
    run_name = f"als-rank{best.rank}-reg{best.reg_param}"
    with registry.training_run(settings.ml, EXPERIMENT, run_name) as tracking:
        mlflow.log_params(
            {
                "rank": best.rank, "reg_param": best.reg_param, "max_iter": conf.max_iter,
                "seed": conf.seed, "grid_ranks": list(conf.ranks),
                "grid_reg_params": list(conf.reg_params),
                "holdout_fraction": conf.holdout_fraction,
                "validation_fraction": conf.validation_fraction, "top_k": k,
                "relevant_stars": conf.relevant_stars,
                **{f"rows_{part}": n for part, n in sizes.items()},
            }
        )  # fmt: skip
        mlflow.log_metrics(runs.finite(metrics))
        mlflow.log_dict({"ratings": lineage}, "inputs.json")
        if "delta_version" in lineage:
            mlflow.set_tag("input.silver_ratings.delta_version", lineage["delta_version"])
        mlflow.log_dict({"trials": [asdict(t) for t in trials]}, "validation_grid.json")
        runs.log_figure(plot_validation(trials), "validation_rmse.png")
        example = holdout.select("customer_id", "sku").limit(5)
        version = registry.log_model(
            model,
            name,
            example.toPandas(),
            model.transform(example).select("prediction").toPandas(),
        )
        tracking.set_model_version_tag(name, version, "holdout_metric", "holdout_rmse")
        tracking.set_model_version_tag(name, version, "holdout_value", str(metrics["holdout_rmse"]))

        def against(champion_version: str) -> tuple[float, float]:
            champion = mlflow.spark.load_model(f"models:/{name}/{champion_version}")
            scores = compare_on_holdout(model, champion, holdout)
            mlflow.log_metrics(runs.finite({"vs_champion_new_rmse": scores[0],
                                        "vs_champion_champion_rmse": scores[1]}))  # fmt: skip
            return scores

        verdict = registry.judge(tracking, name, version, "RMSE", against, higher_is_better=False)
        mlflow.set_tag("promoted", str(verdict.promoted).lower())
        print(json.dumps({k: round(v, 4) for k, v in metrics.items()}, indent=None))
        if not verdict.promoted:
            print(f"{name} v{version} registered, not promoted: {verdict.reason}")
            return 0

        references = {
            name: keep(frame)
            for name, frame in load_references(spark, settings, ["customers", "products"]).items()
        }
        everyone = ratings.select("customer_id", "sku")
        lists = rec.recommend(model, references["customers"], everyone, k)
        regional = popular_by_region(ratings, references["customers"], settings)
        count = publish(
            spark, settings, open_store(settings.views.sqlite_path), lists, regional,
            references, version,
        )  # fmt: skip
        print(f"{name} v{version} is the champion ({verdict.reason}); "
              f"recommendations for {count:,} customers published")  # fmt: skip
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ratings", metavar="PATH", help="train on this ratings file or table, not silver ratings"
    )
    parser.add_argument("--format", choices=FORMATS, help="format of --ratings (default: guessed)")


def main(argv: Sequence[str] | None = None) -> int:
    return launch(__doc__.splitlines()[0], train, argv, add_flags, prog="train_recommender")
