"""The MLflow model registry as retailstream uses it: stable names, a `champion` alias.

A new version becomes the champion only when it beats the current one on the
same holdout; `promote` and `rollback` move the alias by hand. The alias's
history (which versions held it, newest last) is kept as a tag on the
registered model, so `rollback` knows where to go back to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from retailstream.config import MlSettings
from retailstream.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# mlflow is imported where it is used: importing it takes about a second, which every
# `retailstream` command would pay (the CLI imports the jobs that score and train).

CHAMPION = "champion"
HISTORY_TAG = "champion_history"


def _mlflow_error() -> type[Exception]:
    """MLflow's exception class, for `except` clauses (imported when one is reached)."""
    from mlflow.exceptions import MlflowException

    return MlflowException


def client(settings: MlSettings) -> MlflowClient:
    """A client of the configured tracking store and registry (created on first use)."""
    import mlflow

    settings.store_dir.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking)
    mlflow.set_registry_uri(settings.tracking)
    return mlflow.MlflowClient(tracking_uri=settings.tracking, registry_uri=settings.tracking)


def served(settings: MlSettings) -> bool:
    """Whether the tracking store is an MLflow server (by URI), not a local database."""
    return settings.tracking.startswith(("http://", "https://"))


def use_experiment(settings: MlSettings, name: str) -> str:
    """Make `name` the active experiment and return its id. Its artifacts go under
    `store_dir/artifacts` with a local store; a tracking server keeps them where it
    is told to (its `--artifacts-destination`), so other machines can read them."""
    tracking = client(settings)
    experiment = tracking.get_experiment_by_name(name)
    if experiment is None:
        location = None if served(settings) else (settings.store_dir / "artifacts" / name).as_uri()
        experiment_id = tracking.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    import mlflow

    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def training_run(settings: MlSettings, experiment: str, run_name: str) -> Iterator[MlflowClient]:
    """An MLflow run in `experiment` (active for `mlflow.log_*`); yields the registry client."""
    import mlflow

    use_experiment(settings, experiment)
    tracking = client(settings)
    with mlflow.start_run(run_name=run_name):
        yield tracking


def champion_version(tracking: MlflowClient, name: str) -> str | None:
    """The version number the `champion` alias points at, or None (no model, or no champion)."""
    try:
        return str(tracking.get_model_version_by_alias(name, CHAMPION).version)
    except _mlflow_error():
        return None


def _history(tracking: MlflowClient, name: str) -> list[str]:
    tags = tracking.get_registered_model(name).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def set_champion(tracking: MlflowClient, name: str, version: str) -> None:
    """Point `champion` at `version` and append it to the alias's history."""
    tracking.get_model_version(name, version)  # fails clearly for an unknown version
    tracking.set_registered_model_alias(name, CHAMPION, version)
    history = [*_history(tracking, name), str(version)]
    tracking.set_registered_model_tag(name, HISTORY_TAG, ",".join(history[-50:]))


def promote(tracking: MlflowClient, name: str, version: str) -> None:
    """Make `version` the champion by hand (`retailstream models promote`)."""
    _require_model(tracking, name)
    try:
        tracking.get_model_version(name, version)
    except _mlflow_error():
        raise UserError(f"{name} has no version {version}") from None
    set_champion(tracking, name, version)


def rollback(tracking: MlflowClient, name: str) -> str:
    """Give `champion` back to the version that held it before the current one; return it."""
    _require_model(tracking, name)
    history = _history(tracking, name)
    current = champion_version(tracking, name)
    if current is None:
        raise UserError(f"{name} has no champion to roll back")
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise UserError(f"{name}: version {current} is the first champion; nothing to roll back to")
    previous = history[-1]
    tracking.set_registered_model_alias(name, CHAMPION, previous)
    tracking.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    return previous


def _require_model(tracking: MlflowClient, name: str) -> None:
    try:
        tracking.get_registered_model(name)
    except _mlflow_error():
        known = ", ".join(m.name for m in tracking.search_registered_models()) or "none yet"
        raise UserError(f"no registered model {name!r} (registered: {known})") from None


@dataclass(frozen=True)
class VersionRow:
    """One line of `retailstream models list`."""

    model: str
    version: str
    aliases: tuple[str, ...]
    run_id: str
    metric: str
    value: float | None
    created: int


def versions(tracking: MlflowClient, metric_tag: str = "holdout_metric") -> list[VersionRow]:
    """Every version of every registered model, newest first within a model."""
    rows = []
    for model in tracking.search_registered_models():
        # A search does not fill in aliases: ask for the one that matters.
        champion = champion_version(tracking, model.name)
        for v in tracking.search_model_versions(f"name = '{model.name}'"):
            metric = v.tags.get(metric_tag, "")
            value = v.tags.get("holdout_value")
            rows.append(
                VersionRow(
                    model=model.name,
                    version=str(v.version),
                    aliases=(CHAMPION,) if str(v.version) == champion else (),
                    run_id=v.run_id or "",
                    metric=metric,
                    value=float(value) if value else None,
                    created=int(v.creation_timestamp or 0),
                )
            )
    return sorted(rows, key=lambda r: (r.model, -int(r.version)))


def log_model(model: Any, name: str, example: pd.DataFrame, example_output: pd.DataFrame) -> str:
    """Log a Spark ML model to the active run with its signature and an input example,
    register it as a new version of `name`, and return the version number."""
    import mlflow.spark
    from mlflow.models import infer_signature

    signature = infer_signature(example, example_output)
    info = mlflow.spark.log_model(
        model, "model", registered_model_name=name, signature=signature, input_example=example,
        # A Spark ML model needs pyspark (MLflow adds itself). Left to infer them, MLflow
        # loads the model in a new process with a Spark of its own: 20 s a model on 2 cores.
        pip_requirements=mlflow.spark.get_default_pip_requirements(),
    )  # fmt: skip
    return str(info.registered_model_version)


@dataclass(frozen=True)
class Verdict:
    """Whether a new version takes the champion alias, and why."""

    promoted: bool
    reason: str


def judge(
    tracking: MlflowClient,
    name: str,
    version: str,
    metric: str,
    score: Callable[[str], tuple[float, float]],
    higher_is_better: bool,
) -> Verdict:
    """Decide on the champion and move the alias when the new `version` wins.

    `score(champion_version)` returns (new, champion) on the same holdout rows.
    A tie keeps the current champion. Also tags the version with its verdict.
    """
    current = champion_version(tracking, name)
    if current is None:
        verdict = Verdict(True, "no champion yet")
    else:
        new, old = score(current)
        better = new > old if higher_is_better else new < old
        verdict = Verdict(
            better, f"holdout {metric} {new:.4f} vs champion v{current} {old:.4f} on the same rows"
        )
    tracking.set_model_version_tag(name, version, "verdict", verdict.reason)
    if verdict.promoted:
        set_champion(tracking, name, version)
    return verdict
