"""``medsr mos report``: the study's results as Markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from medsr import layout
from medsr.fsutil import atomic_write_json, atomic_write_text
from medsr.mos.analysis import RATING_COLUMNS, analyse, annotate
from medsr.mos.study import CHECK_DEGRADED, CHECK_ORIGINAL, Study


def ratings_csv(study: Study, ratings: Sequence[dict]) -> str:
    """Every rating, one row each (columns ``RATING_COLUMNS``), images named by study key only."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(RATING_COLUMNS), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(annotate(study, ratings))
    return buffer.getvalue()


def write_report(
    study: Study, ratings: Sequence[dict], out: str | Path, *, n_resamples: int = 2000, seed: int = 0
) -> dict:
    """Write ``report.md``, ``report.json``, ``mos.csv`` and ``ratings.csv`` to ``out``; returns the results."""
    out = Path(out)
    results = analyse(study, ratings, n_resamples=n_resamples, seed=seed)
    atomic_write_text(out / layout.MOS_RATINGS, ratings_csv(study, ratings))
    atomic_write_text(out / layout.MOS_SCORES, _mos_csv(results))
    atomic_write_json(out / layout.MOS_REPORT_JSON, results)
    atomic_write_text(out / layout.MOS_REPORT_MD, markdown(results))
    return results


def _mos_csv(results: dict) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "raters",
            "method",
            "mos",
            "ci_low",
            "ci_high",
            "n_ratings",
            "improvement_pct",
            "improvement_ci_low",
            "improvement_ci_high",
        ]
    )
    for population in ("all_raters", "without_flagged"):
        block = results[population]
        for method, m in block["methods"].items():
            vs = block["vs_baseline"].get(method, {})
            writer.writerow(
                [
                    population,
                    method,
                    m["mos"],
                    m["ci_low"],
                    m["ci_high"],
                    m["n_ratings"],
                    vs.get("improvement_pct", ""),
                    vs.get("ci_low", ""),
                    vs.get("ci_high", ""),
                ]
            )
    return buffer.getvalue()


def _f(value, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    """The report as Markdown: MOS table (paper Table 2 style) for all raters and without flagged ones."""
    study = results["study"]
    lines = [
        f"# Reader study: {study['title']}",
        "",
        f"{results['n_raters']} raters, {results['n_ratings']} ratings, {study['n_trials']} trials; "
        f"{results['n_flagged']} rater(s) flagged. Scale: 1 = poor reconstruction ... 5 = indistinguishable from the original.",
        "",
        f"CIs: {results['rules']['ci']}.",
        "",
    ]
    for population, heading in (("all_raters", "All raters"), ("without_flagged", "Without flagged raters")):
        lines += _population_section(results[population], heading, study["baseline"])
    return "\n".join(
        lines + _agreement_section(results.get("metric_agreement") or {}) + _raters_section(results)
    )


def _agreement_section(agreement: dict) -> list[str]:
    """Which automatic metric ranks the (image, method) pairs as the readers did (flagged raters left out)."""
    if not agreement:
        return []
    first = next(iter(agreement.values()))
    lines = [
        "## Which automatic metric agrees with the readers",
        "",
        f"Spearman correlation between each (image, method) pair's MOS (without flagged raters) and the metric's "
        f"value for it, over {first['n_images']} images, 95% bootstrap CI over images. Agreement is the "
        "correlation signed so that positive means the metric ranks the pairs as the readers did (negated "
        "for metrics where lower is better). Few images give wide intervals.",
        "",
        "| Metric | agreement | 95% CI | Spearman rho | pairs |",
        "|---|---|---|---|---|",
    ]
    for column, entry in agreement.items():
        low, high = entry["agreement_ci"]
        lines.append(
            f"| {column} | {_f(entry['agreement'], 3)} | [{_f(low, 3)}, {_f(high, 3)}] | {_f(entry['rho'], 3)} | "
            f"{entry['n_pairs']} |"
        )
    return lines + [""]


def _versus(method: str, baseline: str, vs: dict | None) -> tuple[str, str]:
    if method == baseline:
        return "(baseline)", ""
    if not vs:
        return "-", ""
    return f"{vs['improvement_pct']:+.1f}%", f"[{_f(vs['ci_low'], 1)}, {_f(vs['ci_high'], 1)}]%"


def _population_section(block: dict, heading: str, baseline: str) -> list[str]:
    """The MOS table of one population of raters, its hidden checks and agreement."""
    lines = [
        f"## {heading} ({block['n_raters']} raters, {block['n_images']} images)",
        "",
        "| Method | MOS | 95% CI | vs " + baseline + " | 95% CI | ratings |",
        "|---|---|---|---|---|---|",
    ]
    for method, m in block["methods"].items():
        versus = _versus(method, baseline, block["vs_baseline"].get(method))
        lines.append(
            f"| {method} | {_f(m['mos'])} | [{_f(m['ci_low'])}, {_f(m['ci_high'])}] | {versus[0]} | "
            f"{versus[1]} | {m['n_ratings']} |"
        )
    checks, agreement = block["checks"], block["agreement"]
    return lines + [
        "",
        f"Hidden original: mean {_f(checks[CHECK_ORIGINAL]['mean'])} (n {checks[CHECK_ORIGINAL]['n']}); "
        f"hidden degraded image: mean {_f(checks[CHECK_DEGRADED]['mean'])} (n {checks[CHECK_DEGRADED]['n']}). "
        f"Inter-rater agreement, Krippendorff's alpha (ordinal): {_f(agreement['krippendorff_alpha_ordinal'], 3)} "
        f"over {agreement['n_units']} items.",
        "",
    ]


def _raters_section(results: dict) -> list[str]:
    """One row per rater (checks, agreement, screen, time, consistency, flags) and the flag rules."""
    lines = [
        "## Raters",
        "",
        "| Rater | Ratings | Checks failed | rho vs consensus | Narrow-screen ratings | "
        "Median s per trial (browser) | Median s per trial (server) | Repeat difference | Flag |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["raters"]:
        lines.append(
            f"| {r['alias']} (#{r['rater_id']}) | {r['n_ratings']} | {r['checks_failed']}/{r['checks']} | "
            f"{_f(r['consensus_rho'])} | {r['narrow_screen_ratings']} | {_f(r['median_trial_seconds'], 1)} | "
            f"{_f(r.get('median_server_seconds'), 1)} | {_f(r.get('repeat_difference'))} | {'; '.join(r['reasons']) or '-'} |"
        )
    rules = results["rules"]
    fast = rules.get("flag_fast_server_seconds")
    speed = (
        (
            f", or when their median time per trial on the server's clock (from the later of the trial's first "
            f"display and their previous submit, to its submit) is under {fast:g} s (implausibly fast)"
        )
        if fast is not None
        else ""
    )
    speed += ", or when they gave every image the same score" if rules.get("flag_constant_scores") else ""
    return lines + [
        "",
        f"Flags: attention checks fail when {rules['attention_check_fails']}; a rater is flagged at "
        f"{rules['flag_failed_checks_share']:.0%} failed checks, or when {rules['flag_anti_consensus']}{speed}. "
        "Narrow screen: a viewport under 1024 px wide (reported, not flagged). Repeat difference: mean |score of "
        "a hidden second showing of an image - score of its first showing| (0: perfectly consistent).",
        "",
    ]
