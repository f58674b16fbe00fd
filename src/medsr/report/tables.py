"""Markdown tables in the layout of the paper's Table 1 (interpolation scores) and Table 2
(every method with its % improvement over the baseline), with 95% confidence intervals, and the
notes that must travel with them (patients and slices, few-patients warning, overlap warning).

Each table takes one summary block of ``medsr.evaluate`` (overall or one modality) and names its
patients and slices in its header."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

#: Below this many patients, intervals and p-values are flagged as unreliable.
FEW_PATIENTS = 10


def _digits(metric: str) -> int:
    return 4 if metric.startswith("ssim") else 2


def _number(value: float, digits: int, sign: str = "") -> str:
    return "-" if value != value else f"{value:{sign}.{digits}f}"  # NaN (one patient): no interval


def _score(entry: dict, metric: str) -> str:
    d = _digits(metric)
    return f"{_number(entry['mean'], d)} [{_number(entry['ci_low'], d)}, {_number(entry['ci_high'], d)}]"


def p_value(value: float) -> str:
    """A p-value as the tables print it: ``<0.001``, ``0.042``, or ``-`` for NaN."""
    if value != value:
        return "-"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _difference(diff: dict, metric: str) -> str:
    d = _digits(metric)
    if diff["n_patients"] < 2:
        return f"{diff['improvement_pct']:+.2f}% ({_number(diff['mean_diff'], d, '+')}; one patient: no interval or p-value)"
    return (
        f"{diff['improvement_pct']:+.2f}% ({_number(diff['mean_diff'], d, '+')} [{_number(diff['ci_low'], d, '+')}, "
        f"{_number(diff['ci_high'], d, '+')}], bootstrap [{_number(diff['boot_low'], d, '+')}, {_number(diff['boot_high'], d, '+')}]; "
        f"p {p_value(diff['p_patients'])} over patients, {p_value(diff['p_slices'])} over slices)"
    )


def units(block: dict) -> str:
    """``4 patients, 60 slices`` for a summary block."""
    n, m = block["n_patients"], block["n_images"]
    return f"{n} patient{'s' * (n != 1)}, {m} slice{'s' * (m != 1)}"


def interval(entry: dict, digits: int) -> str:
    """``+1.10, +5.13`` (signed) for an entry with ``ci_low``/``ci_high``; ``-`` for NaN bounds."""
    return f"{_number(entry['ci_low'], digits, '+')}, {_number(entry['ci_high'], digits, '+')}"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def table1(block: dict, methods: Sequence[str]) -> str:
    """Table 1 layout: SSIM and PSNR of the interpolation methods (mean [95% CI])."""
    lines = [f"| Method ({units(block)}) | SSIM | PSNR (dB) |", "|---|---|---|"]
    for name in methods:
        entry = block["methods"][name]
        lines.append(f"| {_cell(name)} | {_score(entry['ssim'], 'ssim')} | {_score(entry['psnr'], 'psnr')} |")
    return "\n".join(lines)


def table2(block: dict, methods: Sequence[str], baseline: str) -> str:
    """Table 2 layout: scores and % improvement over the baseline, with paired CIs and p-values."""
    head = (
        f"| Method ({units(block)}) | SSIM | PSNR (dB) | SSIM vs {baseline} | PSNR vs {baseline} "
        "| SSIM fg | PSNR fg (dB) |"
    )
    lines = [head, "|---|---|---|---|---|---|---|"]
    for name in methods:
        entry = block["methods"][name]
        cells = [_cell(name), _score(entry["ssim"], "ssim"), _score(entry["psnr"], "psnr")]
        for metric in ("ssim", "psnr"):
            cells.append(
                "(baseline)" if name == baseline else _difference(block["vs_baseline"][name][metric], metric)
            )
        cells += [_score(entry["ssim_fg"], "ssim_fg"), _score(entry["psnr_fg"], "psnr_fg")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def label(column: str) -> str:
    """How tables and notes name a score column (``PSNR (dB)``, ``HFEN fg``)."""
    from medsr.metrics.registry import spec_of

    return spec_of(column).label + (" fg" if column.endswith("_fg") else "")


def more_metrics_table(block: dict, methods: Sequence[str], baseline: str, metrics: Sequence[str]) -> str:
    """The metrics beyond PSNR and SSIM (``medsr evaluate --metrics``): per method mean [95% CI] and
    the paired difference to the baseline [95% CI] with its p over patients; arrows say which way
    is better. Empty when there are none."""
    from medsr.metrics.registry import spec_of

    extra = [m for m in metrics if m.removesuffix("_fg") not in ("psnr", "ssim")]
    if not extra:
        return ""
    labels = [f"{label(m)} {'↑' if spec_of(m).higher_is_better else '↓'}" for m in extra]
    lines = [f"| Method ({units(block)}) | " + " | ".join(labels) + " |", "|---|" + "---|" * len(extra)]
    for name in methods:
        cells = [_cell(name)]
        for metric in extra:
            digits, entry = spec_of(metric).digits, block["methods"][name][metric]
            text = f"{_number(entry['mean'], digits)} [{_number(entry['ci_low'], digits)}, {_number(entry['ci_high'], digits)}]"
            if name != baseline:
                diff = block["vs_baseline"][name][metric]
                text += f"; {_number(diff['mean_diff'], digits, '+')} [{interval(diff, digits)}] p {p_value(diff['p_patients'])}"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def blocks(summary: dict) -> Iterator[tuple[str, dict]]:
    """(title, block): the overall block, then one per modality when there are several."""
    yield "all modalities" if summary.get("by_modality") else "all images", summary
    for modality, block in summary.get("by_modality", {}).items():
        yield modality, block


def warnings(summary: dict) -> list[str]:
    """Bold notes that must stand beside the tables: training patients among the evaluated ones,
    too few patients for the statistics, images dropped for a non-finite score."""
    notes = []
    for overlap in summary["protocol"].get("overlap", []):
        if overlap["unknown"]:
            notes.append(
                f"**Not shown to be held out: {overlap['model']} has no record of its training patients "
                "(scored with --allow-overlap).**"
            )
        elif overlap["n_seen"]:
            notes.append(
                f"**Not held out: {overlap['model']} was trained or validated on {overlap['n_seen']} of the "
                f"{overlap['n_evaluated']} evaluated patients (scored with --allow-overlap); its scores are optimistic.**"
            )
        else:
            notes.append(
                f"**Not held out: {overlap['model']} was trained or validated on the source files of "
                f"{overlap['seen_slices']} of the {overlap['n_slices']} evaluated slices, under other patient ids "
                "(scored with --allow-overlap); its scores are optimistic.**"
            )
    for title, block in blocks(summary):
        n = min(
            (entry["n_patients"] for metrics in block["methods"].values() for entry in metrics.values()),
            default=0,
        )
        if n == 1:
            notes.append(
                f"**{title}: one patient only, so no interval or p-value can be given** (slices of one patient "
                "are not independent; the patients are the units)."
            )
        elif n < FEW_PATIENTS:
            notes.append(
                f"**{title}: only {n} patients, so intervals and p-values are unreliable.** Slices of one patient are "
                f"not independent, so the patients are the units: the t-interval has {n - 1} degrees of freedom, "
                f"the bootstrap has few distinct resamples, and the smallest p the patient-level test can give is "
                f"{2.0 / 2**n:.3g}. Aim for at least {FEW_PATIENTS} test patients."
            )
        dropped = {m: k for m, k in block["dropped"].items() if k}
        if dropped:
            left = {m: next(iter(block["methods"].values()))[m] for m in dropped}
            notes.append(
                f"{title}: images without a finite score for some method were dropped for every method ("
                + ", ".join(
                    f"{label(m)}: {k}, leaving {left[m]['n_patients']} patients and {left[m]['n']} slices"
                    for m, k in dropped.items()
                )
                + ")."
            )
    return notes


def protocol_text(protocol: dict) -> str:
    """One paragraph stating how the numbers were made."""
    degradation = ", ".join(f"{k}={v}" for k, v in protocol["degradation"].items())
    return (
        f"{protocol['n_images']} images of the `{protocol['split']}` split of `{protocol['dataset']}` "
        f"({protocol['n_patients']} patients); every method scored on the same LR images "
        f"(degradation: {degradation}; seed {protocol['seed']}). Images in [0, 1], data_range 1, "
        f"border crop {protocol['crop_border']} px; SSIM: {protocol['ssim']}. "
        "Mean [95% CI]: t-interval with the patients as units (cluster-robust, patients - 1 degrees of freedom); "
        f"differences are paired (same images), with the patient bootstrap interval ({protocol['n_resamples']} "
        "resamples) beside the t-interval, p over patients from the exact sign-flip permutation test on per-patient "
        "mean differences (primary) and p over slices from the Wilcoxon signed-rank test (secondary: it treats "
        "slices of one patient as independent); fg: foreground (body) mask."
    )
