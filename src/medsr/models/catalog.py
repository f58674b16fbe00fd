"""What ``medsr models`` lists: every baseline and built-in model with its held-out gain.

A built-in model's file records the scores of the evaluation it was released with
(``held_out_scores`` of a ``medsr evaluate`` summary in which it and the interpolation baselines
were scored on the same LR images of held-out patients), so the listing and the model card quote
one measurement. Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from medsr.choices import INTERPOLATIONS

METRICS = ("psnr", "ssim", "psnr_fg", "ssim_fg")
#: One line per interpolation baseline.
BASELINE_DESCRIPTIONS = {
    "nearest": "nearest-neighbour interpolation (OpenCV INTER_NEAREST)",
    "bilinear": "bilinear interpolation (OpenCV INTER_LINEAR)",
    "bicubic": "bicubic interpolation (OpenCV INTER_CUBIC): the reference every gain is measured against",
    "lanczos": "Lanczos interpolation over 8 x 8 neighbours (OpenCV INTER_LANCZOS4)",
}


def held_out_scores(summary: Mapping, *, method: str, source: str | Path) -> dict:
    """The compact record of a ``medsr evaluate`` ``summary.json`` that a built-in model keeps.

    Args:
        summary: the evaluation's summary; it must score ``method``, read from the file ``source``,
            on patients the model was not trained on (``protocol.held_out``).

    Returns:
        ``{"split", "baseline", "degradation", "n_patients", "n_images", "overall": BLOCK,
        "by_modality": {modality: BLOCK}}`` where ``BLOCK = {"n_patients", "n_images", "methods":
        {method: {metric: {mean, ci_low, ci_high}}}, "gain": {method: {metric: {mean_diff, ci_low,
        ci_high, p_patients}}}}`` over the metrics PSNR, SSIM and their foreground variants.

    Raises:
        ValueError: the summary does not score ``method`` from ``source``, or not on held-out patients.
    """
    protocol = summary.get("protocol", {})
    entries = [m for m in protocol.get("methods", []) if isinstance(m, Mapping) and m.get("name") == method]
    if not entries or method not in summary.get("methods", {}):
        raise ValueError(f"does not score a method named {method!r}")
    if not entries[0].get("source") or Path(entries[0]["source"]).resolve() != Path(source).resolve():
        raise ValueError(f"its {method!r} was read from {entries[0].get('source') or '?'}, not from {source}")
    if protocol.get("held_out") is not True:
        raise ValueError("its scores are not held out (scored with --allow-overlap)")
    return {
        "split": protocol.get("split"),
        "baseline": protocol.get("baseline"),
        "degradation": protocol.get("degradation"),
        "n_patients": summary.get("n_patients"),
        "n_images": summary.get("n_images"),
        "overall": _block(summary),
        "by_modality": {name: _block(block) for name, block in (summary.get("by_modality") or {}).items()},
    }


def _block(block: Mapping) -> dict:
    def pick(stats: Mapping, keys: tuple[str, ...]) -> dict:
        return {m: {k: stats[m][k] for k in keys if k in stats[m]} for m in METRICS if m in stats}

    return {
        "n_patients": block.get("n_patients"),
        "n_images": block.get("n_images"),
        "methods": {m: pick(s, ("mean", "ci_low", "ci_high")) for m, s in block.get("methods", {}).items()},
        "gain": {
            m: pick(s, ("mean_diff", "ci_low", "ci_high", "p_patients"))
            for m, s in block.get("vs_baseline", {}).items()
        },
    }


@dataclass(frozen=True)
class Entry:
    """One line of ``medsr models``."""

    name: str
    kind: str  # baseline | built-in
    size: str
    gain: str
    description: str


def gain_text(evaluation: Mapping, method: str) -> str:
    """``+3.71 dB [+1.2, +6.2] over bicubic (MR +2.1, CT +4.9; 4 test patients)``; ``-`` when not
    measured (or the record is malformed)."""
    try:
        return _gain_text(evaluation, method)
    except (KeyError, TypeError, AttributeError, ValueError):
        return "-"


def _gain_text(evaluation: Mapping, method: str) -> str:
    overall = evaluation.get("overall") or {}
    if method == evaluation.get("baseline", "bicubic"):
        return "0 (the reference)"
    gain = (overall.get("gain") or {}).get(method, {}).get("psnr")
    if not gain:
        return "-"
    parts = [
        f"{name} {(block.get('gain') or {})[method]['psnr']['mean_diff']:+.2f}"
        for name, block in sorted((evaluation.get("by_modality") or {}).items())
        if method in (block.get("gain") or {})
    ]
    interval = f" [{gain['ci_low']:+.2f}, {gain['ci_high']:+.2f}]" if "ci_low" in gain else ""
    where = f"{evaluation.get('n_patients')} {evaluation.get('split')} patients"
    detail = "; ".join([", ".join(parts), where] if parts else [where])
    return f"{gain['mean_diff']:+.2f} dB{interval} over {evaluation.get('baseline')} ({detail})"


def entries(builtins: Mapping[str, Mapping], sizes: Mapping[str, str]) -> list[Entry]:
    """The listing: the baselines (their gains from the first built-in model's evaluation, which
    scored them on the same images), then the built-in models.

    Args:
        builtins: name -> the built-in file's metadata (``models.builtin.read_metadata``).
        sizes: name -> a size text for the built-in files (``1.6 MB, 0.41 M parameters``).
    """
    reference = next((m.get("evaluation") or {} for m in builtins.values() if m.get("evaluation")), {})
    rows = [
        Entry(name, "baseline", "-", gain_text(reference, name), BASELINE_DESCRIPTIONS[name])
        for name in INTERPOLATIONS
    ]
    for name, meta in builtins.items():
        description = f"{meta.get('description', '')} (version {meta.get('version')})".strip()
        rows.append(
            Entry(
                name,
                "built-in",
                sizes.get(name, "-"),
                gain_text(meta.get("evaluation") or {}, name),
                description,
            )
        )
    return rows


def format_entries(rows: list[Entry], architectures: list[str]) -> str:
    """The listing as aligned text, then the architectures that ``medsr train`` can train."""
    widths = [max(len(getattr(r, f)) for r in rows) for f in ("name", "kind", "size")]
    lines = [
        f"{r.name:<{widths[0]}}  {r.kind:<{widths[1]}}  {r.size:<{widths[2]}}  {r.description}\n"
        f"{'':<{widths[0]}}  held-out PSNR gain: {r.gain}"
        for r in rows
    ]
    lines.append(f"architectures to train (medsr train; no weights): {', '.join(architectures)}")
    return "\n".join(lines)
