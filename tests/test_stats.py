from __future__ import annotations

import numpy as np
import pytest

from medsr.stats import bootstrap_ci, paired_comparison


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
    assert result["ci_low"] > 0.4 and result["ci_high"] < 0.6 and result["wilcoxon_p"] < 1e-6
    assert result["improvement_pct"] == pytest.approx(100 * 0.5 / base.mean(), rel=0.1)
    same = paired_comparison(base, base)
    assert same["wilcoxon_p"] == 1.0 and same["mean_diff"] == 0.0
