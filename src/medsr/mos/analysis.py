"""Results of a reader study: MOS with crossed bootstrap CIs, agreement, and flagged raters.

* MOS per method: the mean of its ratings; 95% CI from a bootstrap that resamples raters and images
  independently (a crossed design: both are samples from larger populations), percentile intervals.
  The % improvement over the baseline (the paper's Table 2) comes from the same resamples, so its CI
  accounts for the pairing of methods within rater and image.
* Inter-rater agreement: Krippendorff's alpha, ordinal, over the method items (units) and raters.
* Flags: a rater is flagged when they failed at least half of their attention checks (the original
  scored <= 2, or the degraded image >= 4), or when their scores anti-correlate with the consensus
  (Spearman rho < 0 against the mean of the other raters on the same items, one-sided p < 0.05): the
  inverted-scale problem; or when their median time per trial on the server's clock (first serving
  of the trial to the submit, ``server_seconds``) is under ``FAST_SERVER_SECONDS``: nobody compares a
  trial's images that fast. Results are given for all raters and without the flagged ones.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from medsr.mos.study import (
    CHECK_DEGRADED,
    CHECK_ORIGINAL,
    DEGRADED_CHECK_FAIL_AT_LEAST,
    METHOD,
    NARROW_SCREEN_PX,
    ORIGINAL_CHECK_FAIL_AT_MOST,
    REPEAT,
    Study,
)

FAILED_CHECKS_FLAG = 0.5  # flag at this share of failed attention checks
ANTI_CONSENSUS_P = 0.05
MIN_ITEMS_FOR_CORRELATION = 5
FAST_SERVER_SECONDS = 1.0  # flag a median server-side time per trial under this (seconds)
RATING_COLUMNS = (
    "rating_id",
    "rater_id",
    "rater_alias",
    "trial_id",
    "image_key",
    "item_id",
    "kind",
    "method",
    "score",
    "shown_at",
    "viewport_width",
    "viewport_height",
    "device_pixel_ratio",
    "trial_seconds",
    "server_seconds",
    "created_at",
)


def annotate(study: Study, ratings: Sequence[dict]) -> list[dict]:
    """Ratings joined with the study key: image key, item kind (method or check) and method name."""
    rows = []
    for rating in ratings:
        item = study.item_by_id.get(rating["item_id"])
        if item is None:
            continue  # an item of another version of the study
        trial = study.trial_of_item[item.item_id]
        rows.append({**rating, "image_key": trial.image_key, "kind": item.kind, "method": item.method or ""})
    return rows


def analyse(study: Study, ratings: Sequence[dict], *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """Everything ``medsr mos report`` prints, as a JSON-ready dict.

    Args:
        ratings: rows of :meth:`medsr.mos.db.Database.ratings` (scores 1-5).
    """
    rows = annotate(study, ratings)
    raters = _rater_quality(rows)
    flagged = {r["rater_id"] for r in raters if r["flagged"]}
    result = {
        "study": {
            "title": study.title,
            "study_id": study.study_id,
            "n_trials": len(study.trials),
            "methods": list(study.methods),
            "baseline": study.baseline,
        },
        "n_ratings": len(rows),
        "n_raters": len(raters),
        "n_flagged": len(flagged),
        "rules": {
            "attention_check_fails": f"original <= {ORIGINAL_CHECK_FAIL_AT_MOST} or degraded >= {DEGRADED_CHECK_FAIL_AT_LEAST}",
            "flag_failed_checks_share": FAILED_CHECKS_FLAG,
            "flag_anti_consensus": f"Spearman rho < 0 with one-sided p < {ANTI_CONSENSUS_P} "
            f"(at least {MIN_ITEMS_FOR_CORRELATION} items)",
            "flag_fast_server_seconds": FAST_SERVER_SECONDS,
            "flag_constant_scores": f"every score the same (at least {MIN_ITEMS_FOR_CORRELATION} items)",
            "ci": f"95% percentile bootstrap over raters and images, {n_resamples} resamples, seed {seed}",
        },
        "raters": raters,
        "all_raters": _population(study, rows, n_resamples, seed),
        "without_flagged": _population(
            study, [r for r in rows if r["rater_id"] not in flagged], n_resamples, seed
        ),
    }
    kept = [r for r in rows if r["rater_id"] not in flagged]
    result["metric_agreement"] = metric_agreement(study, kept, n_resamples=n_resamples, seed=seed)
    return result


def metric_agreement(study: Study, rows: Sequence[dict], *, n_resamples: int = 2000, seed: int = 0) -> dict:
    """How well each automatic metric ranks the (image, method) pairs as the readers do.

    For every score column the evaluation recorded (``study.json``'s ``metrics``), the Spearman
    correlation between the MOS of each (image, method) pair (its raters' mean score; method items
    only) and the metric's value for that pair, with a 95% percentile bootstrap over images (an
    image's pairs are resampled together). ``agreement`` is the correlation signed so that positive
    means "ranks as readers do" (negated for metrics where lower is better).

    Returns:
        ``{column: {"rho", "ci_low", "ci_high", "agreement", "agreement_ci", "n_pairs", "n_images"}}``, best
        agreement first; empty when the study has no recorded metrics or no ratings.
    """
    from medsr.metrics.registry import spec_of

    table = study.info.get("metrics") or {}
    totals: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in rows:
        if row["kind"] == METHOD and row["method"] in table.get(row["image_key"], {}):
            totals[(row["image_key"], row["method"])].append(row["score"])
    pairs = sorted(totals)
    if len(pairs) < 3:
        return {}
    mos = np.array([np.mean(totals[p]) for p in pairs])
    images = sorted({key for key, _ in pairs})
    members = [np.array([i for i, p in enumerate(pairs) if p[0] == key]) for key in images]
    rng = np.random.default_rng(seed)
    draws = [
        np.concatenate([members[j] for j in rng.integers(0, len(images), len(images))])
        for _ in range(n_resamples)
    ]
    out = {}
    for column in sorted({c for key, method in pairs for c in table[key][method]}):
        values = np.array([table[key][method].get(column, np.nan) for key, method in pairs], dtype=float)
        rho = _spearman(mos, values)
        low, high = _percentiles(np.array([_spearman(mos[d], values[d]) for d in draws]))
        sign = 1.0 if spec_of(column).higher_is_better else -1.0
        out[column] = {
            "rho": rho if np.isfinite(rho) else None,
            "ci_low": low,
            "ci_high": high,
            "agreement": sign * rho if np.isfinite(rho) else None,
            "agreement_ci": sorted(sign * v for v in (low, high)) if low is not None else [None, None],
            "n_pairs": int(np.isfinite(values).sum()),
            "n_images": len(images),
        }
    return dict(
        sorted(
            out.items(), key=lambda item: -(item[1]["agreement"] if item[1]["agreement"] is not None else -9)
        )
    )


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho over the finite pairs; NaN when undefined (fewer than 3, or a constant side)."""
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return float("nan")
    return float(sps.spearmanr(a[keep], b[keep]).statistic)


def _score_cube(
    rows: list[dict], rater_ids: list, image_keys: list[str], methods: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """(sum, count) of scores per [rater, image, method] (one rating per cell in a complete study)."""
    r_index = {r: k for k, r in enumerate(rater_ids)}
    i_index = {i: k for k, i in enumerate(image_keys)}
    total = np.zeros((len(rater_ids), len(image_keys), len(methods)))
    count = np.zeros_like(total)
    for row in rows:
        cell = (r_index[row["rater_id"]], i_index[row["image_key"]], methods.index(row["method"]))
        total[cell] += row["score"]
        count[cell] += 1
    return total, count


def _crossed_bootstrap(total: np.ndarray, count: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """(n_resamples, methods) MOS with raters and images resampled independently (crossed)."""
    rng = np.random.default_rng(seed)
    n_raters, n_images = total.shape[:2]
    boot = np.empty((n_resamples, total.shape[2]))
    for b in range(n_resamples):
        rs, im = rng.integers(0, n_raters, n_raters), rng.integers(0, n_images, n_images)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot[b] = total[rs][:, im].sum(axis=(0, 1)) / count[rs][:, im].sum(axis=(0, 1))
    return boot


def _population(study: Study, rows: list[dict], n_resamples: int, seed: int) -> dict:
    """MOS, CIs, improvement over the baseline, agreement and check means for one set of raters."""
    method_rows = [r for r in rows if r["kind"] == METHOD]
    rater_ids = sorted({r["rater_id"] for r in method_rows})
    image_keys = sorted({r["image_key"] for r in method_rows})
    out: dict = {
        "n_raters": len(rater_ids),
        "n_images": len(image_keys),
        "n_ratings": len(method_rows),
        "methods": {},
        "vs_baseline": {},
        "checks": {},
    }
    for kind in (CHECK_ORIGINAL, CHECK_DEGRADED):
        scores = [r["score"] for r in rows if r["kind"] == kind]
        out["checks"][kind] = {"mean": float(np.mean(scores)) if scores else None, "n": len(scores)}
    if not method_rows:
        out["agreement"] = {"krippendorff_alpha_ordinal": None, "n_units": 0}
        return out
    methods = list(study.methods)
    total, count = _score_cube(method_rows, rater_ids, image_keys, methods)
    boot = _crossed_bootstrap(total, count, n_resamples, seed)
    for k, method in enumerate(methods):
        n = int(count[..., k].sum())
        low, high = _percentiles(boot[:, k])
        scores = [r["score"] for r in method_rows if r["method"] == method]
        out["methods"][method] = {
            "mos": float(total[..., k].sum() / n) if n else None,
            "ci_low": low,
            "ci_high": high,
            "n_ratings": n,
            "sd": float(np.std(scores, ddof=1)) if n > 1 else None,
        }
    base = methods.index(study.baseline)
    for k, method in enumerate(methods):
        if k == base or out["methods"][method]["mos"] is None or not out["methods"][study.baseline]["mos"]:
            continue
        mos, ref = out["methods"][method]["mos"], out["methods"][study.baseline]["mos"]
        with np.errstate(invalid="ignore", divide="ignore"):
            low, high = _percentiles(100.0 * (boot[:, k] / boot[:, base] - 1.0))
            diff_low, diff_high = _percentiles(boot[:, k] - boot[:, base])
        out["vs_baseline"][method] = {
            "improvement_pct": 100.0 * (mos / ref - 1.0),
            "ci_low": low,
            "ci_high": high,
            "mos_diff": mos - ref,
            "diff_ci_low": diff_low,
            "diff_ci_high": diff_high,
        }
    out["agreement"] = krippendorff_alpha(method_rows)
    return out


def _percentiles(values: np.ndarray) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def krippendorff_alpha(rows: Sequence[dict]) -> dict:
    """Krippendorff's alpha (ordinal, values 1-5) over items x raters; None with fewer than 2 raters per item."""
    import krippendorff

    raters = sorted({r["rater_id"] for r in rows})
    items = sorted({r["item_id"] for r in rows})
    matrix = np.full((len(raters), len(items)), np.nan)
    r_index = {r: k for k, r in enumerate(raters)}
    i_index = {i: k for k, i in enumerate(items)}
    for row in rows:
        matrix[r_index[row["rater_id"]], i_index[row["item_id"]]] = row["score"]
    pairable = int((np.isfinite(matrix).sum(axis=0) >= 2).sum())
    alpha = None
    if len(raters) >= 2 and pairable and np.unique(matrix[np.isfinite(matrix)]).size > 1:
        alpha = float(
            krippendorff.alpha(
                reliability_data=matrix, level_of_measurement="ordinal", value_domain=[1, 2, 3, 4, 5]
            )
        )
    return {"krippendorff_alpha_ordinal": alpha, "n_units": pairable, "n_raters": len(raters)}


def _rater_quality(rows: list[dict]) -> list[dict]:
    """Per rater: attention checks, agreement with the consensus of the others, screen sizes, and flags."""
    by_item: dict[str, dict[int, int]] = defaultdict(dict)
    for row in rows:
        by_item[row["item_id"]][row["rater_id"]] = row["score"]
    by_rater: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        by_rater[row["rater_id"]].append(row)
    quality = []
    for rater_id, mine in sorted(by_rater.items()):
        checks = [r for r in mine if r["kind"] in (CHECK_ORIGINAL, CHECK_DEGRADED)]
        failed = sum(
            1
            for r in checks
            if (r["kind"] == CHECK_ORIGINAL and r["score"] <= ORIGINAL_CHECK_FAIL_AT_MOST)
            or (r["kind"] == CHECK_DEGRADED and r["score"] >= DEGRADED_CHECK_FAIL_AT_LEAST)
        )
        own, consensus = [], []
        for row in mine:
            others = [s for other, s in by_item[row["item_id"]].items() if other != rater_id]
            if others:
                own.append(row["score"])
                consensus.append(float(np.mean(others)))
        rho = p_value = None
        if len(own) >= MIN_ITEMS_FOR_CORRELATION and np.ptp(own) > 0 and np.ptp(consensus) > 0:
            test = sps.spearmanr(own, consensus, alternative="less")
            rho, p_value = float(test.statistic), float(test.pvalue)
        reasons = []
        if checks and failed and failed / len(checks) >= FAILED_CHECKS_FLAG:
            reasons.append(f"failed {failed} of {len(checks)} attention checks")
        if rho is not None and rho < 0 and p_value < ANTI_CONSENSUS_P:
            reasons.append(f"anti-correlated with the consensus (Spearman rho {rho:.2f}, p {p_value:.3g})")
        if len(mine) >= MIN_ITEMS_FOR_CORRELATION and len({r["score"] for r in mine}) == 1:
            reasons.append(f"gave every image the same score ({mine[0]['score']})")
        server = median_server_seconds(mine)
        if server is not None and server < FAST_SERVER_SECONDS:
            reasons.append(
                f"implausibly fast: median {server:.2f} s per trial on the server's clock "
                f"(under {FAST_SERVER_SECONDS:g} s)"
            )
        narrow = sum(1 for r in mine if r["viewport_width"] < NARROW_SCREEN_PX)
        times = [r["trial_seconds"] for r in mine if r.get("trial_seconds") is not None]
        quality.append(
            {
                "rater_id": rater_id,
                "alias": mine[0]["rater_alias"],
                "n_ratings": len(mine),
                "checks": len(checks),
                "checks_failed": failed,
                "consensus_rho": rho,
                "consensus_p": p_value,
                "narrow_screen_ratings": narrow,
                "median_trial_seconds": float(np.median(times)) if times else None,
                "median_server_seconds": server,
                "repeat_difference": repeat_difference(mine),
                "flagged": bool(reasons),
                "reasons": reasons,
            }
        )
    return quality


def repeat_difference(rows: Sequence[dict]) -> float | None:
    """Mean |score of a repeated image - score of its first showing| over a rater's trials (0 for a
    perfectly consistent rater; None without repeats)."""
    by_trial: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["kind"] in (METHOD, REPEAT):
            by_trial[row["image_key"]][row["method"]].append(row["score"])
    differences = [
        abs(scores[0] - scores[1])
        for trial in by_trial.values()
        for scores in trial.values()
        if len(scores) == 2
    ]
    return float(np.mean(differences)) if differences else None


def median_server_seconds(rows: Sequence[dict]) -> float | None:
    """Median over trials of ``server_seconds`` (one value per trial: every rating of a trial shares it);
    None when no rating has one (the trials were never marked shown, or an older database)."""
    per_trial: dict[str, float] = {}
    for row in rows:
        seconds = row.get("server_seconds")
        if seconds is not None:
            per_trial.setdefault(row.get("trial_id", ""), float(seconds))
    return float(np.median(list(per_trial.values()))) if per_trial else None
