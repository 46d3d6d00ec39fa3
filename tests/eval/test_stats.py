import math

import numpy as np
import pytest
from scipy import optimize
from scipy import stats as sps

from firefly_eval import stats

# Fleiss (1971) as worked on Wikipedia ("Fleiss' kappa"): 10 subjects, 14 raters, 5 categories -> 0.210.
FLEISS_WIKI = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
               [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]


def test_fleiss_textbook_example():
    kappa, reason = stats.fleiss_kappa(FLEISS_WIKI)
    # P-bar = 0.378, P-e = 0.213 (by hand): kappa = (0.378 - 0.213) / (1 - 0.213) = 0.210
    assert round(kappa, 3) == 0.210 and reason is None


def test_fleiss_degenerate_and_unequal_counts():
    assert stats.fleiss_kappa([[3, 0], [2, 0]]) == (
        None, "every rating is the same category: agreement is perfect but kappa is undefined")
    assert stats.fleiss_kappa(np.zeros((0, 3)))[0] is None
    # two units, 2 and 3 ratings: P_1 = 1, P_2 = (2*1 + 0) / 6 = 1/3, P-bar = 2/3;
    # shares (4/5, 1/5): P-e = 0.68, kappa = (2/3 - 0.68) / 0.32 = -1/24
    kappa, _ = stats.fleiss_kappa([[2, 0], [2, 1]])
    assert kappa == pytest.approx(-1 / 24)
    with pytest.raises(ValueError):
        stats.fleiss_kappa([[1, 0]])


def test_cohen_textbook_example():
    # Wikipedia "Cohen's kappa": 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no of 50 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    kappa, reason = stats.cohen_kappa(a, b)
    assert kappa == pytest.approx(0.4) and reason is None
    assert stats.cohen_kappa(["x", "y"], ["x", "y"]) == (1.0, None)
    assert stats.cohen_kappa(["tie"] * 4, ["tie"] * 4)[0] is None
    assert stats.cohen_kappa([], []) == (None, "no items rated by both annotators")


def test_sign_test_matches_scipy():
    assert stats.sign_test(86, 4) == sps.binomtest(86, 90, 0.5).pvalue
    assert stats.sign_test(5, 5) == 1.0
    # exact by hand: 2 * P(X <= 1 | n=10) = 2 * 11 / 1024
    assert stats.sign_test(1, 9) == pytest.approx(22 / 1024)
    assert stats.sign_test(0, 0) is None


def test_win_rate_and_bootstrap_ci():
    assert stats.win_rate(86, 40, 4) == pytest.approx(106 / 130)
    assert stats.win_rate(0, 0, 0) is None
    scores = np.array([1, 0.5, 1, 0, 1, 1, 0.5, 2, 1.5, 0])
    sizes = np.array([1, 1, 1, 1, 1, 1, 1, 2, 2, 1])
    ci = stats.clustered_ratio_ci(scores, sizes, 2000, seed=3)
    point = scores.sum() / sizes.sum()
    assert ci[0] < point < ci[1] and 0 <= ci[0] and ci[1] <= 1
    assert ci == stats.clustered_ratio_ci(scores, sizes, 2000, seed=3)  # reproducible with the seed
    assert ci != stats.clustered_ratio_ci(scores, sizes, 2000, seed=4)
    assert stats.clustered_ratio_ci(np.array([1.0, 2.0]), np.array([1, 2]), 100) == [1.0, 1.0]
    assert stats.clustered_ratio_ci(np.array([1.0]), np.array([1]), 100) is None


def test_clustering_widens_the_interval():
    # the same 40 votes, once as 40 items, once as 4 items of 10 identical votes: clustering must widen
    rng = np.random.default_rng(0)
    outcomes = np.repeat(rng.choice([0.0, 1.0], size=4), 10)
    spread = stats.clustered_ratio_ci(outcomes, np.ones(40), 2000, 0)
    clustered = stats.clustered_ratio_ci(outcomes.reshape(4, 10).sum(1), np.full(4, 10), 2000, 0)
    assert clustered[1] - clustered[0] > spread[1] - spread[0]


def test_proportion_test():
    rate, ci, p = stats.proportion_test(30, 50)
    assert rate == 0.6 and p == sps.binomtest(30, 50).pvalue
    exact = sps.binomtest(30, 50).proportion_ci(method="exact")
    assert ci == [exact.low, exact.high] and ci[0] < 0.6 < ci[1]
    assert stats.proportion_test(0, 0) is None


def test_bradley_terry_two_models_closed_form():
    # two models, 3 wins to 1: p_a / p_b = 3 and geometric mean 1 -> sqrt(3), 1 / sqrt(3)
    p = stats.bradley_terry(np.array([[0, 3], [1, 0]]))
    assert p == pytest.approx([math.sqrt(3), 1 / math.sqrt(3)])
    assert stats.bradley_terry(np.array([[0, 2, 2], [2, 0, 2], [2, 2, 0]])) == pytest.approx([1, 1, 1])


def test_bradley_terry_is_the_likelihood_maximum():
    wins = np.array([[0, 7, 8], [3, 0, 6], [2, 4, 0]], float)
    p = stats.bradley_terry(wins)
    assert np.exp(np.log(p).mean()) == pytest.approx(1)
    assert p[0] > p[1] > p[2]

    def nll(theta):
        theta = np.concatenate([[0.0], theta])
        diff = theta[:, None] - theta[None, :]
        return -(wins * (diff - np.logaddexp(0, diff))).sum()

    theta = optimize.minimize(nll, np.zeros(2), method="BFGS", options={"gtol": 1e-10}).x
    reference = np.exp(np.concatenate([[0.0], theta]))
    reference /= np.exp(np.log(reference).mean())
    assert p == pytest.approx(reference, rel=1e-5)


def test_bradley_terry_bootstrap_dominance():
    # 20 items; on each, A beats B, B beats C and A beats C: a strict order, finite thanks to the prior
    item = np.zeros((3, 3))
    item[0, 1] = item[1, 2] = item[0, 2] = 1
    items = np.repeat(item[None], 20, axis=0)
    point, ci = stats.bradley_terry_bootstrap(items, prior=0.5, n_resamples=200, seed=0)
    assert point[0] > point[1] > point[2] and np.isfinite(point).all()
    assert point[1] == pytest.approx(1.0)  # symmetric: the middle model is the geometric mean
    assert ci == pytest.approx(np.stack([point, point], axis=1), rel=1e-6)  # identical items: no spread
    # B wins 6 of the 20 A-B comparisons: the intervals get width, contain the estimate, are reproducible
    items[:6, 0, 1], items[:6, 1, 0] = 0, 1
    point, ci = stats.bradley_terry_bootstrap(items, prior=0.5, n_resamples=300, seed=1)
    assert point[0] > point[1] > point[2]
    assert (ci[:, 0] < point).all() and (point < ci[:, 1]).all()
    assert np.array_equal(ci, stats.bradley_terry_bootstrap(items, prior=0.5, n_resamples=300, seed=1)[1])
    assert stats.elo(1.0) == 1000 and stats.elo(10.0) == 1400
