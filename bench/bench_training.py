"""Recommender training cost: time and quality against the number of ratings, with baselines.

Ratings are drawn from a known taste model so that the best reachable RMSE is
known: per customer and item a bias and an 8-dimensional taste vector, stars
= round(3.6 + biases + taste product + noise) clipped to 1..5, items picked
with a long-tailed popularity (Zipf 0.8), rating times spread over 90 days;
about 25 ratings per customer, 100 per item (at most 5,000 items). They are
written as Parquet and read back through `read_ratings`, the path of
`train recommender --ratings`.

At each size the run does what `train recommender` does before MLflow:
the time-based split, the grid search on validation (`ml.recommender`: ranks
x regParams), the refit on train + validation, the evaluation on the holdout
(RMSE, precision@10, NDCG@10) and, in the same run on the same holdout, the
baselines (item mean for RMSE, most popular unseen items for the rankings),
each step timed (`fit_and_evaluate`'s laps). The oracle RMSE is that of the
taste model's expected stars on the holdout: the floor any model faces.

    .venv/bin/python bench/bench_training.py [--quick] [--repetitions N]

Public data, in the same run: the MovieLens sample that ships inside pyspark
(`data/mllib/als/sample_movielens_ratings.txt`, 1,501 ratings), read as
`train recommender --ratings` reads a file (its format told by content) and split
as training splits it: its timestamps are all one instant, so at random with
`ml.recommender.seed`. ALS's holdout RMSE against the global mean and the item
mean fitted on the same split.

Full: 100k and 1M ratings, one timed run each after a 20k warm-up (JIT,
caches), and the MovieLens sample. `--quick`: 5k ratings, one grid point, no
warm-up, and the MovieLens sample at that grid point.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyspark
from harness import BENCH_ENV, PROJECT_HOME, Column, Plot, Table, parse_args, publish_tables
from pyspark.sql import functions as F

from retailstream.config import RecommenderSettings, load_settings
from retailstream.jobs.train_recommender import fit_and_evaluate
from retailstream.ml import recommender as rec
from retailstream.ml.ratings_input import read_ratings
from retailstream.ml.runs import kept_in_memory
from retailstream.ml.splits import ratings_split, time_split
from retailstream.session import build_spark

START = datetime(2026, 1, 1, tzinfo=UTC)


TIMING_PLOT = Plot(
    ("ratings",),
    ("split_s", "grid_search_s", "final_fit_s", "evaluate_s", "baselines_s"),
    "seconds",
)
QUALITY_PLOT = Plot(("ratings",), ("rmse", "baseline_rmse", "oracle_rmse"), "holdout RMSE")


def taste_ratings(count: int, seed: int) -> pd.DataFrame:
    """`count` ratings from a known taste model, with each one's expected stars (`true_score`)."""
    rng = np.random.default_rng(seed)
    customers, items, rank = max(40, count // 25), max(60, min(5_000, count // 100)), 8
    taste_c = rng.normal(0.0, 0.45, (customers, rank))
    taste_i = rng.normal(0.0, 0.45, (items, rank))
    bias_c, bias_i = rng.normal(0.0, 0.3, customers), rng.normal(0.0, 0.4, items)
    popularity = 1.0 / np.arange(1, items + 1) ** 0.8
    who = rng.integers(0, customers, count)
    what = rng.choice(items, count, p=popularity / popularity.sum())
    expected = np.clip(
        3.6 + bias_c[who] + bias_i[what] + (taste_c[who] * taste_i[what]).sum(axis=1), 1.0, 5.0
    )
    stars = np.clip(np.rint(expected + rng.normal(0.0, 0.7, count)), 1, 5)
    seconds = rng.uniform(0, 90 * 86_400, count)
    return pd.DataFrame(
        {
            "user_id": [f"C{c:07d}" for c in who],
            "item_id": [f"SKU-{i:06d}" for i in what],
            "rating": stars,
            "timestamp": (START.timestamp() + seconds).astype("int64"),
            "true_score": expected,
        }
    )


def one_size(spark: Any, conf: RecommenderSettings, folder: Path, count: int) -> dict[str, Any]:
    path = folder / f"ratings-{count}.parquet"
    taste_ratings(count, seed=count).to_parquet(path, index=False)
    with kept_in_memory() as keep:
        started = time.monotonic()
        ratings = keep(read_ratings(spark, path, "parquet"))
        split = time_split(ratings, conf.holdout_fraction, conf.validation_fraction).map(keep)
        sizes = split.sizes()
        split_s = time.monotonic() - started
        fitted = fit_and_evaluate(split, conf, keep)
        # Same cuts on the same times: the holdout rows, now with their expected stars.
        truth = spark.read.parquet(str(path)).withColumnRenamed("timestamp", "t")
        truth = truth.selectExpr(
            "rating AS stars", "true_score", "CAST(t AS TIMESTAMP) AS event_time"
        )
        oracle = rec.rmse(
            time_split(truth, conf.holdout_fraction, conf.validation_fraction).holdout,
            prediction="true_score",
        )
    m, s = fitted.metrics, fitted.seconds
    als_s = split_s + s["grid_search"] + s["final_fit"] + s["evaluate"]
    return {
        "ratings": count, **{f"rows_{k}": v for k, v in sizes.items()},
        "customers": int(ratings.select("customer_id").distinct().count()),
        "trials": len(fitted.trials), "rank": fitted.best.rank, "reg_param": fitted.best.reg_param,
        "split_s": split_s, **{f"{k}_s": v for k, v in s.items()}, "als_total_s": als_s,
        "rmse": m["holdout_rmse"], "baseline_rmse": m["baseline_rmse"], "oracle_rmse": oracle,
        "precision": m["precision_at_10"], "baseline_precision": m["baseline_precision_at_10"],
        "ndcg": m["ndcg_at_10"], "baseline_ndcg": m["baseline_ndcg_at_10"],
    }  # fmt: skip


MOVIELENS_SAMPLE = (
    Path(pyspark.__file__).parent / "data" / "mllib" / "als" / "sample_movielens_ratings.txt"
)


def movielens_sample(spark: Any, conf: RecommenderSettings) -> dict[str, Any]:
    """ALS and the mean baselines on pyspark's MovieLens sample, split as training splits it."""
    with kept_in_memory() as keep:
        ratings = keep(read_ratings(spark, MOVIELENS_SAMPLE))
        split, untimed = ratings_split(
            ratings, conf.holdout_fraction, conf.validation_fraction, conf.seed
        )
        split = split.map(keep)
        sizes = split.sizes()
        fitted = fit_and_evaluate(split, conf, keep)
        seen = split.train.unionByName(split.validation)
        global_mean = rec.mean_stars(seen)
        global_rmse = rec.rmse(split.holdout.withColumn("prediction", F.lit(global_mean)))
    return {
        "source": MOVIELENS_SAMPLE.name, "ratings": sum(sizes.values()),
        **{f"rows_{k}": v for k, v in sizes.items()},
        "split": "by time" if untimed is None else f"at random (seed {conf.seed}): {untimed}",
        "rank": fitted.best.rank, "reg_param": fitted.best.reg_param,
        "rmse": fitted.metrics["holdout_rmse"], "item_mean_rmse": fitted.metrics["baseline_rmse"],
        "global_mean_rmse": global_rmse,
    }  # fmt: skip


def main() -> None:
    args = parse_args(__doc__)
    sizes = [5_000] if args.quick else [100_000, 1_000_000]
    warmup = 0 if args.quick else (args.warmup if args.warmup is not None else 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as folder:
        tmp = Path(folder)
        settings = load_settings(
            BENCH_ENV,
            [f"lake.root={tmp / 'lake'}", f"spark.driver_log={tmp / 'driver.log'}",
             "spark.driver_memory=4g"],
            home=PROJECT_HOME,
        )  # fmt: skip
        conf = settings.ml.recommender
        if args.quick:  # one small grid point: the smoke test checks the steps run, not ALS
            conf = conf.model_copy(update={"ranks": (4,), "reg_params": (0.1,), "max_iter": 3})
        spark = build_spark(settings)
        for _ in range(warmup):
            print("warm-up: 20,000 ratings ...", flush=True)
            one_size(spark, conf, tmp, 20_000)
        for count in sizes:
            for round_no in range(args.repetitions or 1):
                print(f"{count:,} ratings, round {round_no + 1} ...", flush=True)
                rows.append({"round": round_no + 1, **one_size(spark, conf, tmp, count)})
                print(f"  {rows[-1]}", flush=True)
        print("pyspark's MovieLens sample ...", flush=True)
        public = movielens_sample(spark, conf)
        print(f"  {public}", flush=True)
        spark.stop()
    timing = Table(
        "Seconds per step (ALS: split, grid search, refit, evaluation; baselines: item mean "
        "and popularity, fitted and evaluated on the same holdout)",
        [
            Column("ratings", "ratings"), Column("rows_train", "train rows"),
            Column("trials", "grid points"), Column("split_s", "split", ".1f"),
            Column("grid_search_s", "grid search", ".1f"), Column("final_fit_s", "refit", ".1f"),
            Column("evaluate_s", "evaluate", ".1f"), Column("als_total_s", "ALS total", ".1f"),
            Column("baselines_s", "baselines", ".1f"),
        ],
        rows,
        TIMING_PLOT,
    )  # fmt: skip
    quality = Table(
        "Holdout quality (the newest 20% of ratings by time)",
        [
            Column("ratings", "ratings"), Column("rank", "rank"), Column("reg_param", "regParam"),
            Column("rmse", "ALS RMSE", ".3f"), Column("baseline_rmse", "item-mean RMSE", ".3f"),
            Column("oracle_rmse", "oracle RMSE", ".3f"),
            Column("precision", "ALS P@10", ".4f"),
            Column("baseline_precision", "popular P@10", ".4f"),
            Column("ndcg", "ALS NDCG@10", ".4f"), Column("baseline_ndcg", "popular NDCG@10", ".4f"),
        ],
        rows,
        QUALITY_PLOT,
    )  # fmt: skip
    movielens = Table(
        "Public data: the MovieLens sample inside pyspark, holdout RMSE against the mean "
        "baselines on the same split",
        [
            Column("source", "file"), Column("ratings", "ratings"),
            Column("rows_train", "train rows"), Column("rows_holdout", "holdout rows"),
            Column("split", "split"), Column("rank", "rank"), Column("reg_param", "regParam"),
            Column("rmse", "ALS RMSE", ".3f"), Column("item_mean_rmse", "item-mean RMSE", ".3f"),
            Column("global_mean_rmse", "global-mean RMSE", ".3f"),
        ],
        [public],
    )  # fmt: skip
    publish_tables(
        "training",
        "Recommender training cost",
        "Training time and holdout quality of `train recommender`'s steps against the number "
        "of ratings (a known taste model), with the item-mean and popularity baselines and the "
        "oracle on the same holdout.",
        [timing, quality, movielens],
        params={
            "sizes": sizes,
            "warmup": warmup,
            "ranks": list(conf.ranks),
            "reg_params": list(conf.reg_params),
            "max_iter": conf.max_iter,
            "spark_master": settings.spark.master,
        },  # fmt: skip
        quick=args.quick,
    )


if __name__ == "__main__":
    main()
