"""Uncertainty of mean scores: (cluster) bootstrap confidence intervals and paired tests.

Slices of one patient are correlated, so by default the bootstrap resamples *patients* (all the
slices of a drawn patient enter together) rather than slices; with one slice per patient this is
the ordinary bootstrap. Intervals are percentile intervals of ``n_resamples`` seeded resamples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats


def _cluster_weights(groups: Sequence[str] | None, n: int, n_resamples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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


def paired_comparison(
    values: Sequence[float],
    baseline: Sequence[float],
    *,
    groups: Sequence[str] | None = None,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """Paired difference ``values - baseline`` (same images): mean, bootstrap CI, Wilcoxon p.

    Returns:
        ``mean_diff``, ``ci_low``, ``ci_high`` (bootstrap, clustered by ``groups``),
        ``wilcoxon_p`` (two-sided signed-rank test over images; 1.0 when all differences are 0),
        ``improvement_pct`` (100 x mean difference / mean baseline), ``n``.
    """
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal lengths, got {a.shape} and {b.shape}")
    diff = a - b
    mean, low, high = bootstrap_ci(diff, groups=groups, confidence=confidence, n_resamples=n_resamples, seed=seed)
    if diff.size == 0 or np.all(diff == 0):
        p_value = 1.0
    else:
        p_value = float(scipy_stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    base_mean = float(b.mean()) if b.size else float("nan")
    return {
        "mean_diff": mean,
        "ci_low": low,
        "ci_high": high,
        "wilcoxon_p": p_value,
        "improvement_pct": 100.0 * mean / base_mean if base_mean else float("nan"),
        "n": int(diff.size),
    }
