"""The true rating model and the best scores any model can reach on generated data.

Stars are drawn as clip(round(mu + noise), 1, 5) with mu = global mean + customer bias +
item bias + u.v and Gaussian noise. `expected_stars` is E[stars | customer, sku], the
prediction with the lowest possible squared error; `best_achievable_scores` evaluates that
oracle (and the true delay probabilities) against what actually happened, giving the
ceiling to compare trained models with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from retailstream.world.reference import World

_erf = np.frompyfunc(math.erf, 1, 1)


def _normal_cdf(x: np.ndarray) -> np.ndarray:
    return 0.5 * (
        1.0 + np.asarray(_erf(np.asarray(x, dtype=np.float64) / math.sqrt(2.0)), dtype=np.float64)
    )


def latent_scores(world: World, customer: np.ndarray, sku: np.ndarray) -> np.ndarray:
    """mu = global mean + customer bias + item bias + u.v for customer/sku positions."""
    latent = world.latent
    taste = np.einsum("nk,nk->n", latent.customer_factors[customer], latent.item_factors[sku])
    return latent.global_mean + latent.customer_bias[customer] + latent.item_bias[sku] + taste


def expected_stars(mu: np.ndarray, noise_sd: float) -> np.ndarray:
    """E[clip(round(mu + N(0, noise_sd^2)), 1, 5)], vectorised over mu."""
    mu = np.asarray(mu, dtype=np.float64)
    # P(stars <= k) = P(mu + noise < k + 0.5) for k = 1..4; stars = 1 + number of thresholds passed.
    cdf = _normal_cdf((np.arange(1, 5)[None, :] + 0.5 - mu[:, None]) / noise_sd)
    return 1.0 + (1.0 - cdf).sum(axis=1)


def draw_stars(mu: np.ndarray, noise_sd: float, rng: np.random.Generator) -> np.ndarray:
    """Observed star ratings 1..5 for latent scores mu."""
    noisy = np.asarray(mu) + rng.normal(0.0, noise_sd, np.shape(mu))
    return np.clip(np.floor(noisy + 0.5), 1, 5).astype(np.int64)


def _frame(rows: pd.DataFrame | Sequence[dict]) -> pd.DataFrame:
    return rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve via the rank-sum statistic (ties get average ranks)."""
    labels = np.asarray(labels, dtype=bool)
    positives, negatives = labels.sum(), (~labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def best_achievable_scores(
    rating_truth: pd.DataFrame | Sequence[dict] = (),
    shipment_truth: pd.DataFrame | Sequence[dict] = (),
) -> dict[str, float]:
    """Scores of the oracle predictors on realised outcomes.

    Expects rating_truth rows with `stars` and `true_score`, shipment_truth rows with
    `delayed` and `true_delay_probability` (rows of `EventBatch` or `truth_frames()`).
    Returns rating RMSE/MAE/Pearson r of the expected-stars oracle and shipment delay
    log-loss, Brier score and ROC AUC of the true probabilities, plus row counts. No model
    can beat these in expectation.
    """
    scores: dict[str, float] = {}
    ratings = _frame(rating_truth)
    if len(ratings):
        stars = ratings["stars"].to_numpy(dtype=np.float64)
        oracle = ratings["true_score"].to_numpy(dtype=np.float64)
        err = stars - oracle
        scores["rating_rmse"] = float(np.sqrt(np.mean(err**2)))
        scores["rating_mae"] = float(np.mean(np.abs(err)))
        scores["rating_pearson_r"] = (
            float(np.corrcoef(stars, oracle)[0, 1]) if len(stars) > 1 else float("nan")
        )
        scores["rating_rows"] = float(len(ratings))
    shipments = _frame(shipment_truth)
    if len(shipments):
        y = shipments["delayed"].to_numpy(dtype=bool)
        p = np.clip(
            shipments["true_delay_probability"].to_numpy(dtype=np.float64), 1e-12, 1 - 1e-12
        )
        scores["delay_log_loss"] = float(-np.mean(np.where(y, np.log(p), np.log(1 - p))))
        scores["delay_brier"] = float(np.mean((p - y) ** 2))
        scores["delay_auc"] = roc_auc(y, p)
        scores["delay_base_rate"] = float(y.mean())
        scores["shipment_rows"] = float(len(shipments))
    return scores
