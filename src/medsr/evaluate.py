"""``medsr evaluate``: every method scored on the same LR images of one split, with uncertainty.

For each image of the split: crop the HR slice to a multiple of the scale, make its LR image once
(deterministic per image id and seed), and give that same LR image to every method. Scores:
PSNR and SSIM on the whole image and inside the body mask. Outputs in ``OUT``:

* ``metrics.csv``: one row per image and method;
* ``summary.json``: the protocol, per method the mean and 95% CI of each metric, and the paired
  difference to the baseline (bootstrap CI clustered by patient, Wilcoxon p, % improvement);
* ``table.md``: the paper's Table 2 layout (and Table 1 for the interpolation methods);
* ``figures/``: Figures 4/5-style comparisons of chosen images and of the best and worst cases;
* ``outputs/`` (with ``save_outputs``): every reconstruction and the HR reference as lossless 16-bit
  PNG on the data set's [0, 1] scale, listed in ``outputs/index.csv`` (what ``medsr mos create`` reads).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsr.data.degrade import Degradation, crop_to_scale, degrade_image
from medsr.data.manifest import read_manifest
from medsr.data.split import group_key
from medsr.errors import MedsrError
from medsr.fsutil import atomic_write_csv, atomic_write_json, atomic_write_text
from medsr.eval_outputs import REFERENCE, save_output, write_index
from medsr.io.raster import read_png16
from medsr.metrics import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW, body_mask, image_scores
from medsr.models import SRModel, load_model
from medsr.models.interpolation import INTERPOLATIONS
from medsr.report import tables
from medsr.report.figures import comparison_figure
from medsr.stats import bootstrap_ci, paired_comparison

METRIC_COLUMNS = ("image_id", "patient_id", "modality", "method", "psnr", "ssim", "psnr_fg", "ssim_fg")
METRICS = ("psnr", "ssim", "psnr_fg", "ssim_fg")


@dataclass(frozen=True)
class EvalOptions:
    """Settings of an evaluation (see ``medsr evaluate --help``)."""

    split: str = "test"
    degradation: Degradation = Degradation()
    baseline: str = "bicubic"
    seed: int = 0
    crop_border: int = 0
    batch_size: int = 8
    figure_ids: tuple[str, ...] = ()
    n_figures: int = 2  # chosen images when figure_ids is empty: the most detailed ones
    limit: int | None = None
    n_resamples: int = 10_000
    save_outputs: bool = False  # write outputs/ (reconstructions + HR) for a reader study


@dataclass
class EvalResult:
    out: Path
    summary: dict
    rows: list[dict] = field(default_factory=list)


def _load_pair(dataset: Path, row: dict[str, str], options: EvalOptions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hr = crop_to_scale(read_png16(dataset / row["file"]), options.degradation.scale).astype(np.float32)
    lq = degrade_image(hr, options.degradation, seed=options.seed, key=row["id"])
    return hr, lq, body_mask(hr)


def _run_batch(model: SRModel, lqs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a model on images of possibly different sizes, batching those of equal size."""
    by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, lq in enumerate(lqs):
        by_shape[lq.shape].append(index)
    outputs: list[np.ndarray] = [np.empty(0)] * len(lqs)
    for indices in by_shape.values():
        batch = np.stack([lqs[i] for i in indices])[:, None]
        for index, sr in zip(indices, model.enhance_batch(batch)):
            outputs[index] = np.clip(sr[0], 0.0, 1.0)
    return outputs


def evaluate(
    dataset: str | Path,
    models: Sequence[SRModel],
    out: str | Path,
    options: EvalOptions = EvalOptions(),
    *,
    progress: bool = False,
) -> EvalResult:
    """Score ``models`` (the baseline is added if missing) on one split; write the outputs to ``out``.

    Raises:
        MedsrError: empty split, a model of another scale, or a model output of the wrong size.
    """
    from tqdm import tqdm

    dataset, out = Path(dataset), Path(out)
    rows = read_manifest(dataset, split=options.split)
    if options.limit is not None:
        rows = rows[: options.limit]
    if not rows:
        raise MedsrError(f"{dataset}: the {options.split} split is empty")
    models = list(models)
    if options.baseline not in [m.name for m in models]:
        models.insert(0, load_model(options.baseline, scale=options.degradation.scale))
    for model in models:
        if model.scale != options.degradation.scale:
            raise MedsrError(f"model {model.name} is x{model.scale}, the protocol is x{options.degradation.scale}")
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise MedsrError(f"each method must appear once, got {', '.join(names)}")

    records: list[dict] = []
    saved: list[dict] = []
    bar = tqdm(total=len(rows), desc=f"evaluate {options.split}", unit="image", disable=not progress, leave=False)
    for start in range(0, len(rows), options.batch_size):
        chunk = rows[start : start + options.batch_size]
        pairs = [_load_pair(dataset, row, options) for row in chunk]
        lqs = [lq for _, lq, _ in pairs]
        patients = [group_key(row["patient_id"], row["series_uid"], row["source"]) for row in chunk]
        for model in models:
            for row, patient, (hr, _, mask), sr in zip(chunk, patients, pairs, _run_batch(model, lqs)):
                if sr.shape != hr.shape:
                    raise MedsrError(f"{model.name} returned {sr.shape} for HR {hr.shape} (image {row['id']})")
                records.append({
                    "image_id": row["id"], "patient_id": patient, "modality": row["modality"], "method": model.name,
                    **image_scores(sr, hr, mask, crop_border=options.crop_border),
                })
                if options.save_outputs:
                    saved.append(save_output(out, row["id"], patient, row["modality"], model.name, sr))
        if options.save_outputs:
            saved += [save_output(out, row["id"], patient, row["modality"], REFERENCE, hr)
                      for row, patient, (hr, _, _) in zip(chunk, patients, pairs)]
        bar.update(len(chunk))
    bar.close()

    out.mkdir(parents=True, exist_ok=True)
    if options.save_outputs:
        write_index(out, saved)
    atomic_write_csv(out / "metrics.csv", METRIC_COLUMNS, ({**r, **{m: repr(r[m]) for m in METRICS}} for r in records))
    summary = _summarize(records, names, dataset, rows, models, options)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "table.md", _tables_markdown(summary, names, options.baseline))
    _write_figures(dataset, rows, records, models, out / "figures", options)
    return EvalResult(out, summary, records)


def _summarize(records, names, dataset, rows, models, options: EvalOptions) -> dict:
    per_method = {name: [r for r in records if r["method"] == name] for name in names}
    groups = [r["patient_id"] for r in per_method[names[0]]]
    stat = dict(n_resamples=options.n_resamples, seed=options.seed)
    methods = {}
    for name, items in per_method.items():
        methods[name] = {}
        for metric in METRICS:
            values = [r[metric] for r in items]
            finite = [v for v in values if np.isfinite(v)]
            mean, low, high = bootstrap_ci(finite, groups=[g for g, v in zip(groups, values) if np.isfinite(v)], **stat)
            methods[name][metric] = {"mean": mean, "ci_low": low, "ci_high": high, "n": len(finite)}
    vs_baseline = {}
    base = per_method[options.baseline]
    for name in names:
        if name == options.baseline:
            continue
        vs_baseline[name] = {}
        for metric in METRICS:
            pairs = [(r[metric], b[metric], g) for r, b, g in zip(per_method[name], base, groups) if np.isfinite(r[metric]) and np.isfinite(b[metric])]
            vs_baseline[name][metric] = paired_comparison([p[0] for p in pairs], [p[1] for p in pairs], groups=[p[2] for p in pairs], **stat)
    protocol = {
        "dataset": str(dataset),
        "split": options.split,
        "n_images": len(rows),
        "n_patients": len(set(groups)),
        "degradation": options.degradation.describe(),
        "scale": options.degradation.scale,
        "seed": options.seed,
        "crop_border": options.crop_border,
        "data_range": 1.0,
        "hr_crop": "bottom/right rows and columns cropped to a multiple of the scale",
        "sr_clip": "method outputs clipped to [0, 1]",
        "ssim": f"Gaussian window {SSIM_WINDOW}x{SSIM_WINDOW}, sigma {SSIM_SIGMA}, K1 {SSIM_K1}, K2 {SSIM_K2}, valid region (Wang et al. 2004)",
        "foreground": "body mask of the HR image: above half its Otsu threshold after a sigma-2 blur, closed, holes filled, specks removed",
        "resampling": "patient",
        "n_resamples": options.n_resamples,
        "baseline": options.baseline,
        "methods": [m.describe() for m in models],
    }
    return {"protocol": protocol, "methods": methods, "vs_baseline": vs_baseline}


def _tables_markdown(summary: dict, names: Sequence[str], baseline: str) -> str:
    text = [f"# Evaluation: {summary['protocol']['split']} split", "", tables.protocol_text(summary["protocol"]), ""]
    text += ["## Table 2 layout: methods against " + baseline, "", tables.table2(summary, names, baseline), ""]
    interpolation = [n for n in names if n in INTERPOLATIONS]
    if interpolation:
        text += ["## Table 1 layout: interpolation methods", "", tables.table1(summary, interpolation), ""]
    return "\n".join(text)


def _write_figures(dataset, rows, records, models, folder: Path, options: EvalOptions) -> None:
    """Figures for the chosen images, then the best and worst image of the first non-baseline method."""
    by_id = {row["id"]: row for row in rows}
    chosen = [i for i in options.figure_ids if i in by_id]
    if not options.figure_ids:
        chosen = [r["id"] for r in sorted(rows, key=lambda r: -float(r["detail_score_norm"] or 0))[: options.n_figures]]
    names = [m.name for m in models]
    primary = next((n for n in names if n != options.baseline), options.baseline)
    scores = {(r["image_id"], r["method"]): r for r in records}
    gain: Callable[[str], float] = (
        (lambda i: scores[(i, primary)]["psnr"] - scores[(i, options.baseline)]["psnr"])
        if primary != options.baseline
        else (lambda i: scores[(i, primary)]["psnr"])
    )
    finite = [r["id"] for r in rows if np.isfinite(gain(r["id"]))]
    picks = [("sample", i) for i in chosen]
    if finite:
        picks += [("best", max(finite, key=gain)), ("worst", min(finite, key=gain))]
    folder.mkdir(parents=True, exist_ok=True)
    for label, image_id in picks:
        row = by_id[image_id]
        hr, lq, mask = _load_pair(dataset, row, options)
        outputs = {m.name: _run_batch(m, [lq])[0] for m in models}
        shown = {n: (scores[(image_id, n)]["psnr"], scores[(image_id, n)]["ssim"]) for n in names}
        title = f"{label}: {image_id} ({row['modality']}, patient {row['patient_id'] or '-'}), x{options.degradation.scale} {options.degradation.kind}"
        comparison_figure(folder / f"{label}_{image_id}.png", hr, lq, outputs, shown, title, mask)
