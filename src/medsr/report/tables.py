"""Markdown tables in the layout of the paper's Table 1 (interpolation scores) and Table 2
(every method with its % improvement over the baseline), with 95% confidence intervals."""

from __future__ import annotations

from collections.abc import Sequence

METRICS = ("ssim", "psnr", "ssim_fg", "psnr_fg")
LABELS = {"ssim": "SSIM", "psnr": "PSNR (dB)", "ssim_fg": "SSIM fg", "psnr_fg": "PSNR fg (dB)"}


def _score(entry: dict, metric: str) -> str:
    digits = 4 if metric.startswith("ssim") else 2
    return f"{entry['mean']:.{digits}f} [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def table1(summary: dict, methods: Sequence[str]) -> str:
    """Table 1 layout: SSIM and PSNR of the interpolation methods (mean [95% CI])."""
    lines = ["| Method | SSIM | PSNR (dB) |", "|---|---|---|"]
    for name in methods:
        entry = summary["methods"][name]
        lines.append(f"| {name} | {_score(entry['ssim'], 'ssim')} | {_score(entry['psnr'], 'psnr')} |")
    return "\n".join(lines)


def table2(summary: dict, methods: Sequence[str], baseline: str) -> str:
    """Table 2 layout: scores and % improvement over the baseline, with paired CIs and p-values."""
    head = "| Method | SSIM | PSNR (dB) | SSIM vs " + baseline + " | PSNR vs " + baseline + " | SSIM fg | PSNR fg (dB) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for name in methods:
        entry = summary["methods"][name]
        cells = [name, _score(entry["ssim"], "ssim"), _score(entry["psnr"], "psnr")]
        for metric in ("ssim", "psnr"):
            if name == baseline:
                cells.append("(baseline)")
                continue
            diff = summary["vs_baseline"][name][metric]
            digits = 4 if metric == "ssim" else 2
            cells.append(
                f"{diff['improvement_pct']:+.2f}% ({diff['mean_diff']:+.{digits}f} [{diff['ci_low']:+.{digits}f}, "
                f"{diff['ci_high']:+.{digits}f}], p {_p(diff['wilcoxon_p'])})"
            )
        cells += [_score(entry["ssim_fg"], "ssim_fg"), _score(entry["psnr_fg"], "psnr_fg")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def protocol_text(protocol: dict) -> str:
    """One paragraph stating how the numbers were made."""
    degradation = ", ".join(f"{k}={v}" for k, v in protocol["degradation"].items())
    return (
        f"{protocol['n_images']} images of the `{protocol['split']}` split of `{protocol['dataset']}` "
        f"({protocol['n_patients']} patients); every method scored on the same LR images "
        f"(degradation: {degradation}; seed {protocol['seed']}). Images in [0, 1], data_range 1, "
        f"border crop {protocol['crop_border']} px; SSIM: {protocol['ssim']}. "
        f"Mean [95% CI] by {protocol['resampling']} bootstrap ({protocol['n_resamples']} resamples); "
        "differences are paired (same images), p from the Wilcoxon signed-rank test over images; "
        "fg: foreground (body) mask."
    )
