from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats as scipy_stats

from medsr import stats
from medsr.stats import bootstrap_ci, cluster_t_interval, group_means, paired_comparison, sign_flip_test


def test_bootstrap_ci_covers_the_mean_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    small = rng.normal(5.0, 1.0, 30)
    large = rng.normal(5.0, 1.0, 3000)
    mean, low, high = bootstrap_ci(small, seed=1)
    assert low < mean < high and mean == pytest.approx(small.mean())
    _, low_l, high_l = bootstrap_ci(large, seed=1)
    assert (high_l - low_l) < (high - low) / 5
    assert bootstrap_ci(small, seed=1) == bootstrap_ci(small, seed=1)


def test_cluster_bootstrap_is_wider_when_slices_of_a_patient_agree():
    rng = np.random.default_rng(1)
    patient_level = rng.normal(0, 1, 10)
    values = np.repeat(patient_level, 20) + rng.normal(0, 0.05, 200)
    groups = [f"p{i}" for i in range(10) for _ in range(20)]
    _, low_i, high_i = bootstrap_ci(values)
    _, low_c, high_c = bootstrap_ci(values, groups=groups)
    assert (high_c - low_c) > 2 * (high_i - low_i)


def test_paired_comparison_detects_a_consistent_gain():
    rng = np.random.default_rng(2)
    base = rng.normal(30, 2, 100)
    better = base + 0.5 + rng.normal(0, 0.1, 100)
    result = paired_comparison(better, base)
    assert result["ci_low"] > 0.4 and result["ci_high"] < 0.6 and result["p_slices"] < 1e-6
    assert (
        result["p_patients"] < 1e-4 and not result["p_patients_exact"]
    )  # 100 independent images: Monte Carlo
    assert result["improvement_pct"] == pytest.approx(100 * 0.5 / base.mean(), rel=0.1)
    same = paired_comparison(base, base)
    assert same["p_slices"] == 1.0 and same["p_patients"] == 1.0 and same["mean_diff"] == 0.0


def test_two_patients_do_not_give_a_collapsed_interval_or_a_tiny_p():
    """The reviewer's case: 2 test patients x 30 slices. The old bootstrap interval was exactly the two
    patient means and the Wilcoxon p over 60 slices 1e-13; the patients are the units."""
    rng = np.random.default_rng(3)
    groups = ["a"] * 30 + ["b"] * 30
    base = np.r_[rng.normal(36, 0.5, 30), rng.normal(39, 0.5, 30)]
    gain = base + np.r_[rng.normal(0.8, 0.1, 30), rng.normal(1.2, 0.1, 30)]
    means = group_means(base, groups)
    _, boot_low, boot_high = bootstrap_ci(base, groups=groups)
    assert boot_low == pytest.approx(means.min()) and boot_high == pytest.approx(means.max())  # collapses
    _, low, high = cluster_t_interval(base, groups=groups)
    assert low < means.min() - 5 and high > means.max() + 5  # 1 degree of freedom: honestly wide
    result = paired_comparison(gain, base, groups=groups)
    assert result["p_slices"] < 1e-9  # what the slice-level test claims
    assert result["p_patients"] == 0.5 and result["p_patients_exact"]  # the most 2 patients can show
    assert result["n_patients"] == 2 and result["n"] == 60


def test_cluster_t_interval_is_the_t_interval_on_patient_means_when_patients_are_balanced():
    rng = np.random.default_rng(4)
    groups = [f"p{i}" for i in range(7) for _ in range(5)]
    values = np.repeat(rng.normal(0, 1, 7), 5) + rng.normal(0, 0.3, 35)
    mean, low, high = cluster_t_interval(values, groups=groups)
    reference = scipy_stats.ttest_1samp(group_means(values, groups), 0.0).confidence_interval(0.95)
    assert mean == pytest.approx(values.mean())
    assert (low, high) == pytest.approx((reference.low, reference.high), rel=1e-12)
    assert np.isnan(cluster_t_interval([1.0, 2.0], groups=["x", "x"])[1])  # one patient: no interval


def test_sign_flip_test_enumerates_every_pattern():
    d = np.array([0.3, -0.1, 0.5, 0.2, 0.4, -0.05])
    observed = abs(d.mean())
    count = sum(
        abs(np.mean(np.array(s) * d)) >= observed - 1e-15 for s in itertools.product((-1, 1), repeat=d.size)
    )
    assert sign_flip_test(d) == (count / 2**d.size, True)
    assert sign_flip_test([1.0, 2.0, 3.0, 4.0])[0] == 2 / 2**4  # the smallest p 4 patients allow


def test_sign_flip_monte_carlo_agrees_with_the_exact_test(monkeypatch):
    d = np.random.default_rng(5).normal(0.2, 1.0, 14)
    exact, is_exact = sign_flip_test(d)
    monkeypatch.setattr(stats, "EXACT_LIMIT", 5)
    estimate, is_estimate = sign_flip_test(d, n_resamples=200_000, seed=1)
    assert is_exact and not is_estimate and estimate == pytest.approx(exact, abs=0.005)
