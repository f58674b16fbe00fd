"""Uncertainty of mean scores when slices come in patients: intervals and paired tests.

Slices of one patient are correlated, so the *patients* are the independent units:

* ``cluster_t_interval``: the mean over slices and a t-interval whose standard error is computed
  from per-patient sums (cluster-robust, patients - 1 degrees of freedom). With one slice per
  patient it is the textbook t-interval; it widens honestly when patients are few instead of
  collapsing onto the observed patient means as a bootstrap does.
* ``bootstrap_ci``: the patient (cluster) bootstrap percentile interval, reported beside it.
* ``sign_flip_test``: the exact two-sided sign-flip permutation test on per-patient mean
  differences (all 2^n sign patterns up to 20 patients, seeded Monte Carlo above): the primary
  paired test. With n patients its smallest possible p is 2 / 2^n.
* ``paired_comparison``: all of the above for paired differences, plus the Wilcoxon signed-rank
  test over slices as a secondary figure (it treats slices as independent, which they are not).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats


def _cluster_weights(
    groups: Sequence[str] | None, n: int, n_resamples: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(resample x cluster) draw counts and the (cluster x item) membership matrix."""
    if groups is None:
        groups = [str(i) for i in range(n)]
    names, inverse = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)
    membership = np.zeros((len(names), n))
    membership[inverse, np.arange(n)] = 1.0
    draws = rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), size=n_resamples)
    return draws, membership


def bootstrap_ci(
    values: Sequence[float],
    *,
    groups: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``values`` and its bootstrap confidence interval.

    Args:
        values: one value per image (finite).
        groups: cluster label per image (patient); None resamples images independently.
        confidence: interval coverage (0.95 for a 95% CI).

    Returns:
        (mean, low, high).
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if not np.all(np.isfinite(x)):
        raise ValueError("bootstrap needs finite values")
    rng = np.random.default_rng(seed)
    draws, membership = _cluster_weights(groups, x.size, n_resamples, rng)
    sums = draws @ (membership @ x)
    counts = draws @ membership.sum(axis=1)
    means = sums / counts
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(x.mean()), float(low), float(high)


def cluster_t_interval(
    values: Sequence[float], *, groups: Sequence[str] | None = None, confidence: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` and a t-interval with the patients (``groups``) as the independent units.

    The standard error of the slice mean is the cluster-robust one, from the per-patient sums of
    deviations (``G / (G - 1) * sum_g (sum_i (x_gi - mean))^2 / n^2``), with G - 1 degrees of
    freedom. One slice per patient gives the ordinary t-interval.

    Returns:
        (mean, low, high); low and high are NaN with fewer than two patients.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    if not np.all(np.isfinite(x)):
        raise ValueError("a t-interval needs finite values")
    labels = (
        np.arange(x.size)
        if groups is None
        else np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)[1]
    )
    n_groups = int(labels.max()) + 1
    mean = float(x.mean())
    if n_groups < 2:
        return mean, float("nan"), float("nan")
    residual_sums = np.bincount(labels, weights=x - mean, minlength=n_groups)
    variance = n_groups / (n_groups - 1) * float(np.sum(residual_sums**2)) / x.size**2
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2.0, n_groups - 1)) * np.sqrt(variance)
    return mean, mean - half, mean + half


def group_means(values: Sequence[float], groups: Sequence[str] | None) -> np.ndarray:
    """Mean of ``values`` per group (in sorted group order); per item when ``groups`` is None."""
    x = np.asarray(values, dtype=np.float64)
    if groups is None:
        return x
    labels = np.unique(np.asarray(groups, dtype=object).astype(str), return_inverse=True)[1]
    return np.bincount(labels, weights=x) / np.bincount(labels)


EXACT_LIMIT = 20  # patients up to which every sign pattern is enumerated


def sign_flip_test(
    differences: Sequence[float], *, n_resamples: int = 100_000, seed: int = 0
) -> tuple[float, bool]:
    """Two-sided sign-flip permutation test of "mean difference = 0" on per-patient differences.

    Args:
        differences: one (mean) difference per patient.
        n_resamples: random sign patterns when there are more than ``EXACT_LIMIT`` patients.

    Returns:
        (p, exact): the share of sign patterns whose |mean| is at least the observed one (exact
        enumeration, including the observed pattern), or (count + 1) / (n_resamples + 1) by Monte
        Carlo; ``exact`` says which. 1.0 when every difference is 0; NaN without data.
    """
    d = np.asarray(differences, dtype=np.float64)
    if d.size == 0:
        return float("nan"), True
    if np.all(d == 0):
        return 1.0, True
    observed = abs(float(d.mean())) * (1.0 - 1e-12)  # ties with the observed value count as extreme
    if d.size <= EXACT_LIMIT:
        bits = np.arange(d.size)
        count = 0
        for start in range(0, 2**d.size, 1 << 16):
            patterns = np.arange(start, min(start + (1 << 16), 2**d.size))
            signs = 1.0 - 2.0 * ((patterns[:, None] >> bits) & 1)
            count += int(np.sum(np.abs(signs @ d) / d.size >= observed))
        return count / 2**d.size, True
    rng = np.random.default_rng(seed)
    count = 0
    for start in range(0, n_resamples, 10_000):
        signs = rng.choice((-1.0, 1.0), size=(min(10_000, n_resamples - start), d.size))
        count += int(np.sum(np.abs(signs @ d) / d.size >= observed))
    return (count + 1) / (n_resamples + 1), False


def describe_mean(
    values: Sequence[float],
    *,
    groups: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """Mean with both intervals: ``mean``, ``ci_low``/``ci_high`` (cluster t), ``boot_low``/``boot_high``
    (patient bootstrap), ``n`` (slices), ``n_patients``."""
    mean, low, high = cluster_t_interval(values, groups=groups, confidence=confidence)
    _, boot_low, boot_high = bootstrap_ci(
        values, groups=groups, confidence=confidence, n_resamples=n_resamples, seed=seed
    )
    return {
        "mean": mean,
        "ci_low": low,
        "ci_high": high,
        "boot_low": boot_low,
        "boot_high": boot_high,
        "n": len(values),
        "n_patients": len(set(groups)) if groups is not None else len(values),
    }


def paired_comparison(
    values: Sequence[float],
    baseline: Sequence[float],
    *,
    groups: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired difference ``values - baseline`` (same images, ``groups`` = their patients).

    Returns:
        ``mean_diff``; ``ci_low``/``ci_high`` (cluster t-interval) and ``boot_low``/``boot_high``
        (patient bootstrap); ``p_patients`` (exact sign-flip test on per-patient mean differences,
        the primary test) and ``p_patients_exact``; ``p_slices`` (Wilcoxon signed-rank over slices,
        secondary: assumes independent slices; 1.0 when all differences are 0);
        ``improvement_pct`` (100 x mean difference / mean baseline); ``n`` (slices), ``n_patients``.
    """
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.shape} and {b.shape}")
    diff = a - b
    summary = describe_mean(diff, groups=groups, confidence=confidence, n_resamples=n_resamples, seed=seed)
    p_patients, exact = sign_flip_test(group_means(diff, groups), seed=seed)
    if diff.size == 0 or np.all(diff == 0):
        p_slices = 1.0
    else:
        p_slices = float(scipy_stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    base_mean = float(b.mean()) if b.size else float("nan")
    mean = summary.pop("mean")
    return {
        "mean_diff": mean,
        **summary,
        "p_patients": p_patients,
        "p_patients_exact": exact,
        "p_slices": p_slices,
        "improvement_pct": 100.0 * mean / base_mean if base_mean else float("nan"),
    }
