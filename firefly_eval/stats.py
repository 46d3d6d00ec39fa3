"""Statistics for the pairwise human evaluation (numpy/scipy).

* Win rate (win + tie/2) / n with a 95% bootstrap interval that resamples items, keeping all votes on
  an item together (scipy.stats.bootstrap, paired, percentile).
* Exact two-sided sign test on wins vs losses (scipy.stats.binomtest; ties dropped).
* Agreement: Cohen's kappa (two annotators) and Fleiss' kappa (any number, items may have different
  numbers of ratings), None with a reason when undefined.
* Position bias: share of non-tie votes won by the left side, Clopper-Pearson interval and binomial test.
* Bradley-Terry strengths (ties as half wins) by Hunter's MM algorithm, with item-bootstrap intervals.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats


def win_rate(win: int, tie: int, loss: int) -> float | None:
    n = win + tie + loss
    return (win + tie / 2) / n if n else None


def clustered_ratio_ci(scores: np.ndarray, counts: np.ndarray, n_resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of sum(scores)/sum(counts), resampling clusters (rows) together.

    `scores[i]` is the summed outcome of cluster i (win 1, tie 0.5, loss 0 per vote), `counts[i]` its
    number of votes. None with fewer than two clusters (nothing to resample).
    """
    scores, counts = np.asarray(scores, float), np.asarray(counts, float)
    if len(scores) < 2:
        return None
    point = scores.sum() / counts.sum()
    if np.allclose(scores, counts * point):  # every cluster has the same rate: the interval is a point
        return [float(point), float(point)]
    result = stats.bootstrap((scores, counts), lambda s, c, axis: s.sum(axis) / c.sum(axis), paired=True,
                             vectorized=True, n_resamples=n_resamples, confidence_level=level,
                             method="percentile", rng=np.random.default_rng(seed))
    return [float(result.confidence_interval.low), float(result.confidence_interval.high)]


def sign_test(wins: int, losses: int) -> float | None:
    """Exact two-sided p-value of wins vs losses under p = 0.5 (ties excluded); None without either."""
    n = wins + losses
    return float(stats.binomtest(wins, n, 0.5).pvalue) if n else None


def proportion_test(successes: int, n: int, level: float = 0.95) -> tuple[float, list[float], float] | None:
    """(rate, Clopper-Pearson interval, two-sided binomial p against 0.5), None when n is 0."""
    if n == 0:
        return None
    test = stats.binomtest(successes, n, 0.5)
    ci = test.proportion_ci(confidence_level=level, method="exact")
    return successes / n, [float(ci.low), float(ci.high)], float(test.pvalue)


def cohen_kappa(ratings_a, ratings_b) -> tuple[float | None, str | None]:
    """Cohen's kappa of two raters' labels on the same units: (kappa, None) or (None, why undefined)."""
    a, b = list(ratings_a), list(ratings_b)
    if len(a) != len(b):
        raise ValueError("both raters must rate the same units")
    if not a:
        return None, "no items rated by both annotators"
    cats = sorted(set(a) | set(b))
    index = {c: i for i, c in enumerate(cats)}
    table = np.zeros((len(cats), len(cats)))
    for x, y in zip(a, b):
        table[index[x], index[y]] += 1
    table /= table.sum()
    observed = np.trace(table)
    expected = float(table.sum(1) @ table.sum(0))
    if math.isclose(expected, 1.0):
        return None, "every rating is the same category: agreement is perfect but kappa is undefined"
    return float((observed - expected) / (1 - expected)), None


def fleiss_kappa(counts) -> tuple[float | None, str | None]:
    """Fleiss' kappa from a units x categories matrix of rating counts; units need >= 2 ratings each.

    Units may have different numbers of ratings (each unit's agreement uses its own count); with equal
    counts this is Fleiss (1971) exactly.
    """
    counts = np.asarray(counts, float)
    if counts.ndim != 2 or len(counts) == 0:
        return None, "no items with several annotators"
    per_unit = counts.sum(1)
    if (per_unit < 2).any():
        raise ValueError("every unit needs at least two ratings")
    agreement = ((counts * (counts - 1)).sum(1) / (per_unit * (per_unit - 1))).mean()
    shares = counts.sum(0) / counts.sum()
    expected = float((shares ** 2).sum())
    if math.isclose(expected, 1.0):
        return None, "every rating is the same category: agreement is perfect but kappa is undefined"
    return float((agreement - expected) / (1 - expected)), None


def bradley_terry(wins: np.ndarray, tol: float = 1e-10, max_iter: int = 100_000) -> np.ndarray:
    """Bradley-Terry strengths from `wins[i, j]` (times i beat j; a tie adds 0.5 to both directions).

    Hunter's (2004) MM iteration; strengths are normalised to geometric mean 1. The maximum-likelihood
    estimate exists when every model has won and lost something within a connected comparison graph;
    otherwise some strengths run to 0 or infinity (add a prior to `wins` first).
    """
    wins = np.asarray(wins, float)
    games = wins + wins.T
    won = wins.sum(1)
    p = np.ones(len(wins))
    for _ in range(max_iter):
        denom = (games / (p[:, None] + p[None, :])).sum(1)
        new = np.where(denom > 0, won / np.where(denom > 0, denom, 1), p)
        new = new / np.exp(np.log(np.maximum(new, 1e-300)).mean())
        if np.max(np.abs(new - p)) < tol:
            return new
        p = new
    return p


def elo(strength: float) -> float:
    """A Bradley-Terry strength on the Elo scale (1000 = geometric mean; +400 = 10:1 odds)."""
    return 1000 + 400 * math.log10(strength)


def bradley_terry_bootstrap(item_wins: np.ndarray, prior: float = 0.5, n_resamples: int = 2000, seed: int = 0,
                            level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """(strengths, [models x 2] percentile intervals) from per-item win matrices `item_wins[k, i, j]`.

    Items are resampled with replacement (all votes of an item together). `prior` virtual ties are added
    to every pair that was compared at all, so a model that lost every game still gets a finite strength.
    """
    item_wins = np.asarray(item_wins, float)
    compared = (item_wins.sum(0) + item_wins.sum(0).T) > 0
    prior_wins = np.where(compared, prior / 2, 0.0)
    point = bradley_terry(item_wins.sum(0) + prior_wins)
    rng = np.random.default_rng(seed)
    n_items = len(item_wins)
    samples = np.empty((n_resamples, len(point)))
    flat = item_wins.reshape(n_items, -1)
    for b in range(n_resamples):
        weights = np.bincount(rng.integers(0, n_items, n_items), minlength=n_items)
        samples[b] = bradley_terry((weights @ flat).reshape(point.size, point.size) + prior_wins)
    alpha = (1 - level) / 2
    return point, np.quantile(samples, [alpha, 1 - alpha], axis=0).T
