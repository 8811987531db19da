"""Train the disruption model: will a departed shipment be late? Tracked and registered in MLflow.

Reads: `silver/shipments_enriched` (features at departure) and `silver/shipments`
(the delivered records: how late), each at its current Delta version (logged);
the generator's shipment truth when there is one (the true probabilities: the
best score any model could reach on that data).
Writes: one MLflow run (parameters, ROC-AUC and PR-AUC of the model, of a
baseline and of the truth on the same holdout, the input versions, the PR
curves, the model with its signature and an input example), registered as a
new version of `ml.disruption_model`; it becomes the `champion` only if its
PR-AUC beats the current champion's on this run's holdout.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from retailstream.config import Settings
from retailstream.io.datasets import silver_table
from retailstream.io.truth import read_truth
from retailstream.jobs.spec import Job
from retailstream.ml import disruption as dis
from retailstream.ml import registry, runs
from retailstream.ml.splits import Split, time_split
from retailstream.transforms.aggregate import aggregate_value

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT = "disruption"
HINT = "run `retailstream run refine` and `retailstream run enrich` first"


@dataclass(frozen=True)
class DisruptionRun:
    """What a training of the disruption model runs with: the settings (it has no flags)."""

    settings: Settings


def scored(model: PipelineModel, rows: DataFrame) -> DataFrame:
    predictions = model.transform(rows)
    return predictions.withColumn("p_late", dis.late_probability(predictions))


def plot_pr_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]]) -> Callable:
    """Precision against recall, one curve per scorer (model, baseline, truth)."""

    def draw(axes: Any) -> None:
        for label, (recall, precision) in curves.items():
            axes.plot(recall, precision, label=label)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.set_ylim(0, 1.02)
        axes.legend()

    return draw


def pr_curves(holdout: DataFrame, scores: Sequence[str]) -> dict[str, tuple[list, list]]:
    """(recall, precision) points of each score column on the held-out rows (collected: small)."""
    from sklearn.metrics import precision_recall_curve

    frame = holdout.select("late", *scores).toPandas()
    curves = {}
    for score in scores:
        if frame[score].notna().all() and frame["late"].nunique() == 2:
            precision, recall, _ = precision_recall_curve(frame["late"], frame[score])
            curves[score] = (list(recall), list(precision))
    return curves


def compare_on_holdout(
    new: PipelineModel, champion: PipelineModel, holdout: DataFrame
) -> tuple[float, float]:
    """(new PR-AUC, champion PR-AUC) on the same held-out rows."""
    mine = dis.aucs(scored(new, holdout), "p_late")["pr_auc"]
    theirs = dis.aucs(scored(champion, holdout), "p_late")["pr_auc"]
    return mine, theirs


@dataclass(frozen=True)
class Prepared:
    """The delivered shipments, labelled and split by departure time, and the Delta
    version of each table they were read from."""

    split: Split
    sizes: dict[str, int]  # rows of each part
    lineage: dict[str, dict[str, Any]]  # table -> its path and Delta version


def prepare(spark: SparkSession, settings: Settings, keep: runs.Kept) -> Prepared:
    """Shipments labelled late or not, split by departure: too few of them stop the run
    here, before anything is fitted, logged or registered."""
    conf = settings.ml.disruption
    enriched, enriched_lineage = runs.pinned_table(
        spark, silver_table(settings, "shipments_enriched"), HINT
    )
    shipments, shipments_lineage = runs.pinned_table(
        spark, silver_table(settings, "shipments"), HINT
    )
    rows = keep(dis.labelled(enriched, shipments, conf.margin_minutes))
    split = time_split(
        rows, conf.holdout_fraction, conf.validation_fraction, column="departed_at"
    ).map(keep)
    sizes = split.sizes()
    runs.require_rows(sizes, conf.min_rows, "delivered shipments")
    print(f"delivered shipments by departure time: {sizes['train']:,} train, "
          f"{sizes['validation']:,} validation, {sizes['holdout']:,} holdout")  # fmt: skip
    lineage = {"shipments_enriched": enriched_lineage, "shipments": shipments_lineage}
    return Prepared(split, sizes, lineage)


@dataclass(frozen=True)
class Fitted:
    """The chosen model, how it was chosen, and how it, the baseline and (on generated
    data) the true probabilities did on the holdout."""

    model: PipelineModel
    best: dis.Trial
    trials: list[dis.Trial]
    metrics: dict[str, float]
    holdout: DataFrame  # the holdout with each scorer's column
    scores: list[str]  # those columns: p_late, baseline_score and, on generated data, truth


def fit(spark: SparkSession, settings: Settings, data: Prepared, keep: runs.Kept) -> Fitted:
    """Choose maxIter and maxDepth on validation, refit on everything before the holdout,
    and score the holdout with the model, the carrier baseline (what the model has to
    beat) and, when the generator's truth is there, the true probabilities (the best
    any model could do)."""
    conf, split = settings.ml.disruption, data.split
    trials = dis.grid_search(split.train, split.validation, conf.iterations, conf.depths, conf.seed)
    best = trials[0]
    print(f"chosen on validation: maxIter {best.max_iter}, maxDepth {best.max_depth} "
          f"(PR-AUC {best.validation_pr_auc:.4f}; {len(trials)} tried)")  # fmt: skip
    seen = split.train.unionByName(split.validation)
    model = dis.gbt_pipeline(best.max_iter, best.max_depth, conf.seed).fit(seen)
    holdout = keep(dis.carrier_baseline(seen, scored(model, split.holdout)))
    metrics = {
        **{f"holdout_{k}": v for k, v in dis.aucs(holdout, "p_late").items()},
        **{f"baseline_{k}": v for k, v in dis.aucs(holdout, "baseline_score").items()},
        "validation_pr_auc": best.validation_pr_auc,
        "holdout_late_rate": float(aggregate_value(holdout, F.avg("late")) or 0.0),
    }
    scores = ["p_late", "baseline_score"]
    truth = read_truth(spark, settings.lake.root, "shipment_truth")
    if truth is not None:
        probabilities = truth.select("shipment_id", F.col("true_delay_probability").alias("truth"))
        holdout = keep(holdout.join(probabilities, "shipment_id", "left"))
        with_truth = holdout.where(F.col("truth").isNotNull())
        metrics.update({f"truth_{k}": v for k, v in dis.aucs(with_truth, "truth").items()})
        scores.append("truth")
    return Fitted(model, best, trials, metrics, holdout, scores)


def log_run(settings: Settings, data: Prepared, fitted: Fitted) -> None:
    """Everything needed to explain a version later, logged to the active MLflow run: the
    parameters and the grid, the split, the metrics, each input's Delta version (also as
    tags, to search runs by), the validation grid and the PR curves of every scorer."""
    import mlflow

    conf, best = settings.ml.disruption, fitted.best
    mlflow.log_params(
        {
            "max_iter": best.max_iter, "max_depth": best.max_depth, "seed": conf.seed,
            "grid_iterations": list(conf.iterations), "grid_depths": list(conf.depths),
            "margin_minutes": conf.margin_minutes, "features": ",".join(
                (*dis.NUMERIC, *dis.CATEGORICAL)),
            **{f"rows_{part}": n for part, n in data.sizes.items()},
        }
    )  # fmt: skip
    mlflow.log_metrics(runs.finite(fitted.metrics))
    mlflow.log_dict(data.lineage, "inputs.json")
    for table, lineage in data.lineage.items():
        mlflow.set_tag(f"input.silver_{table}.delta_version", lineage["delta_version"])
    mlflow.log_dict({"trials": [asdict(t) for t in fitted.trials]}, "validation_grid.json")
    curves = pr_curves(fitted.holdout, fitted.scores)
    runs.log_figure(plot_pr_curves(curves), "pr_curve.png")


def register(tracking: MlflowClient, settings: Settings, data: Prepared, fitted: Fitted) -> str:
    """Log the model (with its signature and an input example) as a new version, tagged
    with its holdout PR-AUC (what `models list` shows); returns the version."""
    name, model = settings.ml.disruption_model, fitted.model
    example = data.split.holdout.select(*dis.CATEGORICAL, *dis.NUMERIC, "departed_at").limit(5)
    version = registry.log_model(
        model, name, example.toPandas(), scored(model, example).select("p_late").toPandas()
    )
    tracking.set_model_version_tag(name, version, "holdout_metric", "holdout_pr_auc")
    tracking.set_model_version_tag(
        name, version, "holdout_value", str(fitted.metrics["holdout_pr_auc"])
    )
    return version


def judge(
    tracking: MlflowClient, settings: Settings, data: Prepared, fitted: Fitted, version: str
) -> registry.Verdict:
    """Promote the new version only if its PR-AUC beats the champion's on this run's
    holdout, both scored on the same rows (logged as `vs_champion_*`): late shipments
    are the few, and PR-AUC is what says how well they are found."""
    import mlflow
    import mlflow.spark

    name = settings.ml.disruption_model

    def against(champion_version: str) -> tuple[float, float]:
        champion = mlflow.spark.load_model(f"models:/{name}/{champion_version}")
        pair = compare_on_holdout(fitted.model, champion, data.split.holdout)
        mlflow.log_metrics(runs.finite({"vs_champion_new_pr_auc": pair[0],
                                        "vs_champion_champion_pr_auc": pair[1]}))  # fmt: skip
        return pair

    verdict = registry.judge(tracking, name, version, "PR-AUC", against, higher_is_better=True)
    mlflow.set_tag("promoted", str(verdict.promoted).lower())
    return verdict


def run(spark: SparkSession, cfg: DisruptionRun) -> int:
    """Prepare the shipments, fit, log and register the model in an MLflow run, and judge
    it against the champion (which `score_shipments` picks up if it changes)."""
    settings = cfg.settings
    with runs.kept_in_memory() as keep:
        data = prepare(spark, settings, keep)
        fitted = fit(spark, settings, data, keep)
        best, name = fitted.best, settings.ml.disruption_model
        run_name = f"gbt-iter{best.max_iter}-depth{best.max_depth}"
        with registry.training_run(settings.ml, EXPERIMENT, run_name) as tracking:
            log_run(settings, data, fitted)
            version = register(tracking, settings, data, fitted)
            verdict = judge(tracking, settings, data, fitted, version)
        print(json.dumps({k: round(v, 4) for k, v in fitted.metrics.items()}))
        state = "is the champion" if verdict.promoted else "registered, not promoted"
        print(f"{name} v{version} {state}: {verdict.reason}")
    return 0


def configure(settings: Settings, args: argparse.Namespace) -> DisruptionRun:
    """A `DisruptionRun` of the settings (the job has no flags of its own)."""
    del args
    return DisruptionRun(settings)


JOB = Job("disruption", __doc__.splitlines()[0], "train", "train_disruption", configure, run)
main = JOB.main
