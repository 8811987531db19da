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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from retailstream.config import RecommenderSettings, Settings
from retailstream.errors import UserError
from retailstream.io.datasets import gold_table, load_references, silver_table
from retailstream.io.delta import write_table
from retailstream.io.truth import read_truth
from retailstream.jobs.spec import Job
from retailstream.ml import implicit, registry, runs
from retailstream.ml import recommender as rec
from retailstream.ml.ratings_input import FORMATS, read_ratings, require_variety
from retailstream.ml.splits import Split, ratings_split
from retailstream.views.store import ServingStore, open_store

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "recommender"


def silver_ratings(spark: SparkSession, settings: Settings) -> tuple[DataFrame, dict[str, Any]]:
    """Silver ratings pinned to their current Delta version, and that version (lineage)."""
    table, lineage = runs.pinned_table(
        spark, silver_table(settings, "ratings"), "run `retailstream run refine` first"
    )
    columns = ("event_id", "customer_id", "sku", F.col("stars").cast("double"), "event_time")
    return table.select(*columns), lineage


@dataclass(frozen=True)
class RecommenderRun:
    """What a training of the recommender runs with: the settings, a ratings file a user
    brings instead of silver ratings (`--ratings`, in `format` or guessed), and whether to
    learn from clicks and orders too (`--implicit`, or `ml.recommender.implicit`)."""

    settings: Settings
    ratings: str | None = None
    format: str | None = None
    implicit: bool = False

    def __post_init__(self) -> None:
        # Refused before anything is read: the signals exist only in the lake.
        if self.signals == "implicit" and self.ratings:
            raise UserError(
                "implicit signals (clicks, orders) come from the lake's silver tables: "
                "train on --ratings without --implicit (and with ml.recommender.implicit false)"
            )

    @property
    def signals(self) -> str:
        """`implicit` (ALS on clicks, orders and good ratings) or `explicit` (on the stars)."""
        return "implicit" if self.settings.ml.recommender.implicit or self.implicit else "explicit"


def training_ratings(spark: SparkSession, cfg: RecommenderRun) -> tuple[DataFrame, dict[str, Any]]:
    """The ratings to train on (the file a user brought, or silver ratings) and where they
    came from (the run's lineage)."""
    if cfg.ratings:
        path = Path(cfg.ratings)
        ratings = read_ratings(spark, path, cfg.format)
        require_variety(ratings, str(path))
        return ratings.withColumn("event_id", F.lit(None).cast("string")), {"file": str(path)}
    return silver_ratings(spark, cfg.settings)


def plot_validation(trials: Sequence[rec.Trial | implicit.RankingTrial]) -> Callable[[Any], None]:
    """The validation score per regParam, one line per rank (the grid the run chose from):
    RMSE for explicit trials, NDCG@k for implicit ones."""
    ranked = bool(trials) and isinstance(trials[0], implicit.RankingTrial)
    label = "validation NDCG@k" if ranked else "validation RMSE"

    def score(trial: Any) -> float:
        return float(trial.validation_ndcg if ranked else trial.validation_rmse)

    def draw(axes: Any) -> None:
        for rank in sorted({t.rank for t in trials}):
            points = sorted((t.reg_param, score(t)) for t in trials if t.rank == rank)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            axes.plot(xs, ys, marker="o", label=f"rank {rank}")
        axes.set_xscale("log")
        axes.set_xlabel("regParam")
        axes.set_ylabel(label)
        axes.legend()

    return draw


def training_signals(
    spark: SparkSession, settings: Settings, ratings: DataFrame
) -> tuple[DataFrame, dict[str, Any]]:
    """Every act of the lake's customers as implicit signals (clicks, orders, good
    ratings), the clickstream and orders pinned to their current Delta versions."""
    hint = "run `retailstream run refine` first"
    clicks, clicks_lineage = runs.pinned_table(spark, silver_table(settings, "clickstream"), hint)
    orders, orders_lineage = runs.pinned_table(spark, silver_table(settings, "orders"), hint)
    conf = settings.ml.recommender
    acts = implicit.signals(clicks, orders, ratings, conf.signal_weights, conf.relevant_stars)
    return acts, {"clickstream": clicks_lineage, "orders": orders_lineage}


def compare_rankings(
    new: PipelineModel, champion: PipelineModel, split: Split, relevant_stars: float, k: int
) -> tuple[float, float]:
    """(new NDCG@k, champion NDCG@k) on the holdout, over the customers both can rank."""
    seen = split.train.unionByName(split.validation)
    customers = split.holdout.select("customer_id").distinct()
    mine = rec.recommend(new, customers, seen, k).persist()
    theirs = rec.recommend(champion, customers, seen, k).persist()
    both = (
        mine.select("customer_id")
        .distinct()
        .join(theirs.select("customer_id").distinct(), "customer_id")
    )
    scores = tuple(
        rec.ranking_metrics(lists.join(both, "customer_id"), split.holdout, relevant_stars, k)[
            f"ndcg_at_{k}"
        ]
        for lists in (mine, theirs)
    )
    mine.unpersist()
    theirs.unpersist()
    return scores[0], scores[1]


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
    write_table(stamped, gold_table(settings, "recommendations"), mode="overwrite")
    write_table(popular, gold_table(settings, "popular_by_region"), mode="overwrite")
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


@dataclass(frozen=True)
class Fitted:
    """The chosen model, how it was chosen, and how it and the baselines did on the holdout."""

    model: PipelineModel
    best: rec.Trial | implicit.RankingTrial
    trials: list[rec.Trial] | list[implicit.RankingTrial]
    metrics: dict[str, float]
    scored: DataFrame | None  # the holdout with predicted stars (explicit models only)
    seconds: dict[str, float]  # wall time of each step (also logged)


class _Laps:
    """Wall time of consecutive steps."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.monotonic()

    def __call__(self, step: str) -> None:
        now = time.monotonic()
        self.seconds[step] = now - self._clock
        self._clock = now


@dataclass(frozen=True)
class _Chosen:
    """The model refit with the parameters validation chose, and what it chose from."""

    model: PipelineModel
    best: rec.Trial | implicit.RankingTrial
    trials: list[rec.Trial] | list[implicit.RankingTrial]
    validation: dict[str, float]  # the chosen point's validation score
    knows: DataFrame  # what the model learnt from (it can rank only these customers)


def _choose_explicit(
    split: Split, seen: DataFrame, conf: RecommenderSettings, laps: _Laps
) -> _Chosen:
    """ALS on the stars, chosen by validation RMSE and refit on every rating before the holdout."""
    trials = rec.grid_search(
        split.train, split.validation, conf.ranks, conf.reg_params, conf.max_iter, conf.seed
    )
    best = trials[0]
    laps("grid_search")
    model = rec.fit_als(seen, best.rank, best.reg_param, conf.max_iter, conf.seed)
    return _Chosen(model, best, trials, {"validation_rmse": best.validation_rmse}, seen)


def _choose_implicit(
    split: Split, acts: DataFrame, conf: RecommenderSettings, keep: runs.Kept, laps: _Laps
) -> _Chosen:
    """ALS on the signals' strengths, chosen by validation NDCG@k. The signals are cut at
    the instants the ratings were split at, so that neither the choice nor the refit
    learns from the period it is judged on."""
    k = conf.top_k
    early = keep(implicit.strengths(acts, split.validation_start))
    trials = implicit.grid_search(
        early, split.validation, split.train, conf.ranks, conf.reg_params, conf.max_iter,
        conf.seed, conf.implicit_alpha, conf.relevant_stars, k,
    )  # fmt: skip
    best = trials[0]
    laps("grid_search")
    knows = keep(implicit.strengths(acts, split.holdout_start))
    model = implicit.fit(knows, best, conf.max_iter, conf.seed, conf.implicit_alpha)
    return _Chosen(model, best, trials, {f"validation_ndcg_at_{k}": best.validation_ndcg}, knows)


def _holdout_metrics(
    model: PipelineModel, split: Split, seen: DataFrame, known: DataFrame,
    conf: RecommenderSettings, keep: runs.Kept, stars: bool,
) -> tuple[dict[str, float], DataFrame | None]:  # fmt: skip
    """How the model ranks for the `known` holdout customers; for a model of `stars` also
    its RMSE and coverage (the share of held-out rows it can score), and the holdout it
    scored (what the generator's truth is compared on)."""
    k, holdout = conf.top_k, split.holdout
    lists = rec.recommend(model, known, seen, k)
    metrics = rec.ranking_metrics(lists, holdout, conf.relevant_stars, k)
    scored = None
    if stars:
        scored = keep(model.transform(holdout))
        metrics["holdout_rmse"] = rec.rmse(scored)
        metrics["holdout_coverage"] = scored.count() / max(1, holdout.count())
    return metrics, scored


def _baseline_metrics(
    holdout: DataFrame, seen: DataFrame, known: DataFrame, conf: RecommenderSettings
) -> dict[str, float]:
    """What a model has to beat to be worth serving: the item mean for RMSE, and the most
    popular items the customer has not rated for the rankings (same customers)."""
    k = conf.top_k
    popular = rec.popular_items(seen, conf.relevant_stars)
    baseline_lists = rec.recommend_popular(known, seen, popular, k)
    metrics = {"baseline_rmse": rec.rmse(rec.item_mean_predictions(seen, holdout))}
    ranking = rec.ranking_metrics(baseline_lists, holdout, conf.relevant_stars, k)
    metrics.update({f"baseline_{name}": value for name, value in ranking.items()})
    return metrics


def fit_and_evaluate(
    split: Split, conf: RecommenderSettings, keep: runs.Kept, acts: DataFrame | None = None
) -> Fitted:
    """Choose rank and regParam on validation, refit on everything before the holdout, and
    judge the model and the baselines (item mean, popularity) on the holdout.

    Explicit (no `acts`): ALS on the ratings, chosen by validation RMSE. Implicit
    (`acts` from `implicit.signals`): ALS on the signals' strengths, chosen by
    validation NDCG@k. Either way the ranking metrics are over the same customers
    for the model and the popularity baseline: those in the holdout the model knows.
    """
    laps = _Laps()
    seen = keep(split.train.unionByName(split.validation))  # ratings before the holdout
    if acts is None:
        chosen = _choose_explicit(split, seen, conf, laps)
    else:
        chosen = _choose_implicit(split, acts, conf, keep, laps)
    best, trials = chosen.best, chosen.trials
    print(f"chosen on validation: rank {best.rank}, regParam {best.reg_param} "
          f"({chosen.validation}; {len(trials)} tried)")  # fmt: skip
    laps("final_fit")

    customers = split.holdout.select("customer_id").distinct()
    known = customers.join(chosen.knows.select("customer_id").distinct(), "customer_id")
    found, scored = _holdout_metrics(chosen.model, split, seen, known, conf, keep, acts is None)
    metrics = {**chosen.validation, **found}
    laps("evaluate")
    metrics.update(_baseline_metrics(split.holdout, seen, known, conf))
    laps("baselines")
    return Fitted(chosen.model, best, trials, metrics, scored, laps.seconds)


@dataclass(frozen=True)
class Prepared:
    """What the model is fitted and judged on, and where it came from."""

    ratings: DataFrame
    split: Split
    sizes: dict[str, int]  # rows of each part
    untimed: str | None  # why the split is at random, not by time (None: by time)
    acts: DataFrame | None  # the implicit signals (None: trained on the stars alone)
    lineage: dict[str, Any]  # each input's file or Delta version


def prepare(spark: SparkSession, cfg: RecommenderRun, keep: runs.Kept) -> Prepared:
    """The ratings split by time (at random when their times cannot tell, said so), and
    the implicit signals when asked for. Too few ratings stop the run here, before
    anything is fitted, logged or registered."""
    conf = cfg.settings.ml.recommender
    ratings, read = training_ratings(spark, cfg)
    ratings = keep(ratings)
    split, untimed = ratings_split(
        ratings, conf.holdout_fraction, conf.validation_fraction, conf.seed
    )
    split = split.map(keep)
    sizes = split.sizes()
    how = "by time" if untimed is None else f"at random (seed {conf.seed})"
    runs.require_rows(sizes, conf.min_ratings, "ratings", how)
    if untimed is not None:
        print(f"the ratings are split at random, not by time: {untimed}")
    print(f"ratings {how}: {sizes['train']:,} train, {sizes['validation']:,} validation, "
          f"{sizes['holdout']:,} holdout")  # fmt: skip
    acts, lineage = None, {"ratings": read}
    if cfg.signals == "implicit":
        acts, signal_lineage = training_signals(spark, cfg.settings, ratings)
        lineage = {**lineage, **signal_lineage}
    return Prepared(ratings, split, sizes, untimed, acts, lineage)


def fit(spark: SparkSession, cfg: RecommenderRun, data: Prepared, keep: runs.Kept) -> Fitted:
    """`fit_and_evaluate`, plus the RMSE of the generator's true tastes on the rows the
    model scored when the ratings are the lake's generated ones: the best any model
    could reach, so the gap says how much is left to learn."""
    fitted = fit_and_evaluate(data.split, cfg.settings.ml.recommender, keep, data.acts)
    truth = read_truth(spark, cfg.settings.lake.root, "rating_truth")
    if truth is not None and not cfg.ratings and fitted.scored is not None:
        fitted.metrics["oracle_rmse"] = rec.oracle_rmse(fitted.scored, truth)
    return fitted


def log_run(cfg: RecommenderRun, data: Prepared, fitted: Fitted) -> None:
    """Everything needed to explain a version later, logged to the active MLflow run: the
    parameters and the grid, the split, the metrics and step times, each input's
    version (also as tags, to search runs by), the validation grid and its plot."""
    import mlflow

    conf, best = cfg.settings.ml.recommender, fitted.best
    mlflow.log_params(
        {
            "rank": best.rank, "reg_param": best.reg_param, "max_iter": conf.max_iter,
            "seed": conf.seed, "grid_ranks": list(conf.ranks),
            "grid_reg_params": list(conf.reg_params),
            "holdout_fraction": conf.holdout_fraction,
            "validation_fraction": conf.validation_fraction, "top_k": conf.top_k,
            "relevant_stars": conf.relevant_stars, "signals": cfg.signals,
            "split": "time" if data.untimed is None else "random",
            **({"implicit_alpha": conf.implicit_alpha,
                "signal_weights": json.dumps(conf.signal_weights)} if data.acts is not None else {}),
            **{f"rows_{part}": n for part, n in data.sizes.items()},
        }
    )  # fmt: skip
    mlflow.log_metrics(runs.finite(fitted.metrics))
    mlflow.log_metrics({f"seconds_{step}": t for step, t in fitted.seconds.items()})
    mlflow.log_dict(data.lineage, "inputs.json")
    for table, read in data.lineage.items():
        if "delta_version" in read:
            mlflow.set_tag(f"input.silver_{table}.delta_version", read["delta_version"])
    mlflow.log_dict({"trials": [asdict(t) for t in fitted.trials]}, "validation_grid.json")
    runs.log_figure(plot_validation(fitted.trials), "validation_grid.png")


def register(tracking: MlflowClient, cfg: RecommenderRun, data: Prepared, fitted: Fitted) -> str:
    """Log the model (with its signature and an input example) as a new version, tagged
    with its signals and the holdout metric it was judged on (what `models list`
    shows); returns the version."""
    name, model = cfg.settings.ml.recommender_model, fitted.model
    example = data.split.holdout.select("customer_id", "sku").limit(5)
    version = registry.log_model(
        model,
        name,
        example.toPandas(),
        model.transform(example).select("prediction").toPandas(),
    )
    # A preference model predicts no stars: its holdout metric is NDCG@k, not RMSE.
    k = cfg.settings.ml.recommender.top_k
    judged_on = f"ndcg_at_{k}" if cfg.signals == "implicit" else "holdout_rmse"
    tracking.set_model_version_tag(name, version, "signals", cfg.signals)
    tracking.set_model_version_tag(name, version, "holdout_metric", judged_on)
    tracking.set_model_version_tag(name, version, "holdout_value", str(fitted.metrics[judged_on]))
    return version


def _judged_on_rankings(tracking: MlflowClient, name: str, signals: str) -> bool:
    """Whether the new version and the champion are compared on NDCG@k rather than RMSE:
    when either side predicts preference (implicit signals) rather than stars."""
    if signals == "implicit":
        return True
    champion_now = registry.champion_version(tracking, name)
    if champion_now is None:
        return False
    return tracking.get_model_version(name, champion_now).tags.get("signals") == "implicit"


def judge(
    tracking: MlflowClient, cfg: RecommenderRun, data: Prepared, fitted: Fitted, version: str
) -> registry.Verdict:
    """Promote the new version only if it beats the champion on this run's holdout, both
    scored on the same rows (the scores are logged as `vs_champion_*`): a version that
    loses is registered and changes nothing served."""
    import mlflow
    import mlflow.spark

    conf, name = cfg.settings.ml.recommender, cfg.settings.ml.recommender_model
    k, model, split = conf.top_k, fitted.model, data.split
    ranked = _judged_on_rankings(tracking, name, cfg.signals)

    def against(champion_version: str) -> tuple[float, float]:
        champion = mlflow.spark.load_model(f"models:/{name}/{champion_version}")
        if ranked:
            scores = compare_rankings(model, champion, split, conf.relevant_stars, k)
        else:
            scores = compare_on_holdout(model, champion, split.holdout)
        what = f"ndcg_at_{k}" if ranked else "rmse"
        mlflow.log_metrics(runs.finite({f"vs_champion_new_{what}": scores[0],
                                        f"vs_champion_champion_{what}": scores[1]}))  # fmt: skip
        return scores

    verdict = registry.judge(
        tracking, name, version, f"NDCG@{k}" if ranked else "RMSE", against,
        higher_is_better=ranked,
    )  # fmt: skip
    mlflow.set_tag("promoted", str(verdict.promoted).lower())
    return verdict


def publish_champion(
    spark: SparkSession, settings: Settings, ratings: DataFrame, model: PipelineModel,
    version: str, keep: runs.Kept,
) -> int:  # fmt: skip
    """The new champion's top-k for every customer, and each region's favourites for the
    customers it knows nothing of, served in place of the last champion's; returns the
    customers with lists. Only a promoted version gets here."""
    references = {
        name: keep(frame)
        for name, frame in load_references(spark, settings, ["customers", "products"]).items()
    }
    everyone = ratings.select("customer_id", "sku")
    lists = rec.recommend(model, references["customers"], everyone, settings.ml.recommender.top_k)
    regional = popular_by_region(ratings, references["customers"], settings)
    return publish(
        spark, settings, open_store(settings.views.store_path), lists, regional,
        references, version,
    )  # fmt: skip


def run(spark: SparkSession, cfg: RecommenderRun) -> int:
    """Prepare the ratings, fit, log and register the model in an MLflow run, judge it
    against the champion, and publish its lists if it takes over."""
    with runs.kept_in_memory() as keep:
        data = prepare(spark, cfg, keep)
        fitted = fit(spark, cfg, data, keep)
        best, name = fitted.best, cfg.settings.ml.recommender_model
        run_name = f"als-{cfg.signals}-rank{best.rank}-reg{best.reg_param}"
        with registry.training_run(cfg.settings.ml, EXPERIMENT, run_name) as tracking:
            log_run(cfg, data, fitted)
            version = register(tracking, cfg, data, fitted)
            verdict = judge(tracking, cfg, data, fitted, version)
            print(json.dumps({k: round(v, 4) for k, v in fitted.metrics.items()}, indent=None))
            if not verdict.promoted:
                print(f"{name} v{version} registered, not promoted: {verdict.reason}")
                return 0
            count = publish_champion(spark, cfg.settings, data.ratings, fitted.model, version, keep)
            print(f"{name} v{version} is the champion ({verdict.reason}); "
                  f"recommendations for {count:,} customers published")  # fmt: skip
    return 0


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ratings", metavar="PATH", help="train on this ratings file or table, not silver ratings"
    )
    parser.add_argument("--format", choices=FORMATS, help="format of --ratings (default: guessed)")
    parser.add_argument(
        "--implicit", action="store_true",
        help="also learn from clicks and orders (implicit ALS, judged on NDCG@10); "
        "same as ml.recommender.implicit=true",
    )  # fmt: skip


def configure(settings: Settings, args: argparse.Namespace) -> RecommenderRun:
    """The flags of `add_flags` as a `RecommenderRun`."""
    return RecommenderRun(
        settings, ratings=args.ratings, format=args.format, implicit=args.implicit
    )


JOB = Job(
    "recommender", __doc__.splitlines()[0], "train", "train_recommender", configure, run, add_flags
)
main = JOB.main
