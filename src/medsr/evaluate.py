"""``medsr evaluate``: every method scored on the same LR images of one split, with uncertainty.

For each image of the split: crop the HR slice to a multiple of the scale, make its LR image once
(deterministic per image id and seed), and give that same LR image to every method. Scores:
PSNR and SSIM on the whole image and inside the body mask. A trained network is scored only on
patients it never saw (train or validation split of its checkpoint's ``trained_on`` record);
``allow_overlap`` overrides that, and the summary and tables then say so in bold.

Statistics treat patients as the units (``medsr.stats``): per metric, an image is kept only where
every method has a finite score (dropped images are counted), then the mean, a cluster t-interval
and the patient bootstrap, and paired differences to the baseline with the exact sign-flip test
over patients (primary) and the Wilcoxon test over slices (secondary), overall and per modality.
Outputs in ``OUT``:

* ``metrics.csv``: one row per image and method;
* ``summary.json``: the protocol, the overall block (``methods``, ``vs_baseline``, counts) and one
  block per modality (``by_modality``);
* ``table.md``: the paper's Table 2 layout (and Table 1 for the interpolation methods), overall and
  per modality, each stating its patients and slices;
* ``figures/``: Figures 4/5-style comparisons of chosen images and of the best and worst cases;
* ``outputs/`` (with ``save_outputs``): every reconstruction and the HR reference as lossless 16-bit
  PNG on the data set's [0, 1] scale, listed in ``outputs/index.csv`` (what ``medsr mos create`` reads).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from medsr import layout
from medsr.batching import batches_by_shape
from medsr.choices import DEFAULT_METRICS
from medsr.data.degrade import Degradation, crop_to_scale, degrade_image
from medsr.data.manifest import patient_of, read_manifest
from medsr.data.provenance import Overlap, check_held_out
from medsr.errors import MedsrError
from medsr.eval_outputs import REFERENCE, SCORE_ID_COLUMNS, save_output, write_index
from medsr.fsutil import atomic_write_csv, atomic_write_json, atomic_write_text
from medsr.io.raster import read_png16
from medsr.metrics import SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW, body_mask
from medsr.metrics.registry import ALWAYS, Scorer, columns, parse_metrics
from medsr.models import SRModel, load_model
from medsr.models.interpolation import INTERPOLATIONS
from medsr.report import tables
from medsr.report.figures import comparison_figure, perception_distortion_figure
from medsr.stats import describe_mean, paired_comparison

METRICS = ("psnr", "ssim", "psnr_fg", "ssim_fg")  # always scored: the paper's tables are built from them


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
    allow_overlap: bool = False  # score networks on patients they were trained on (marked in bold)
    metrics: tuple[str, ...] = DEFAULT_METRICS  # medsr.metrics.registry names (PSNR and SSIM always in)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metrics", parse_metrics(self.metrics))  # checked, in order, PSNR/SSIM in

    @property
    def columns(self) -> tuple[str, ...]:
        """The score columns of metrics.csv (each metric, then the ``_fg`` ones)."""
        return columns(self.metrics)


@dataclass
class EvalResult:
    out: Path
    summary: dict
    rows: list[dict] = field(default_factory=list)


def _load_pair(
    dataset: Path, row: dict[str, str], options: EvalOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    hr = crop_to_scale(read_png16(dataset / row["file"]), options.degradation.scale).astype(np.float32)
    lq = degrade_image(hr, options.degradation, seed=options.seed, key=row["id"])
    return hr, lq, body_mask(hr)


def _run_batch(model: SRModel, lqs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run a model on images of possibly different sizes, batching those of equal size."""
    outputs: list[np.ndarray] = [np.empty(0)] * len(lqs)
    for indices in batches_by_shape(lqs, max(1, len(lqs))):  # the model splits a batch itself
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
    dataset, out = Path(dataset), Path(out)
    rows = _rows(dataset, options)
    models = _methods(models, options)
    names = [m.name for m in models]
    overlaps = held_out_check(models, rows, options)
    records, saved = _score_all(dataset, rows, models, out, options, progress)
    out.mkdir(parents=True, exist_ok=True)
    if options.save_outputs:
        write_index(out, saved)
    atomic_write_csv(
        out / layout.EVAL_METRICS,
        (*SCORE_ID_COLUMNS, *options.columns),
        ({**r, **{m: repr(r[m]) for m in options.columns}} for r in records),
    )
    summary = _summarize(records, names, dataset, rows, models, options, overlaps)
    atomic_write_json(out / layout.EVAL_SUMMARY, summary)
    atomic_write_text(out / layout.EVAL_TABLE, _tables_markdown(summary, names, options.baseline))
    _write_figures(dataset, rows, records, models, out / layout.EVAL_FIGURES, options)
    if "lpips" in options.metrics:
        for title, block in tables.blocks(summary):
            perception_distortion_figure(
                out / layout.EVAL_FIGURES / f"perception_distortion_{title.replace(' ', '_')}.png",
                block,
                names,
                f"Perception-distortion plane, {title} ({tables.units(block)}), {options.split} split",
            )
    return EvalResult(out, summary, records)


def _rows(dataset: Path, options: EvalOptions) -> list[dict[str, str]]:
    """The manifest rows scored (the split, up to ``limit``), with ``figure_ids`` checked against them."""
    rows = read_manifest(dataset, split=options.split)
    if options.limit is not None:
        rows = rows[: options.limit]
    if not rows:
        raise MedsrError(f"{dataset}: the {options.split} split is empty")
    unknown = [i for i in options.figure_ids if i not in {row["id"] for row in rows}]
    if unknown:
        raise MedsrError(f"--figure: {unknown[0]} is not an image of the {options.split} split scored here")
    return rows


def _methods(models: Sequence[SRModel], options: EvalOptions) -> list[SRModel]:
    """``models`` with the baseline first if it was missing; each once, all at the protocol's scale."""
    models = list(models)
    if options.baseline not in [m.name for m in models]:
        models.insert(0, load_model(options.baseline, scale=options.degradation.scale))
    for model in models:
        if model.scale != options.degradation.scale:
            raise MedsrError(
                f"model {model.name} is x{model.scale}, the protocol is x{options.degradation.scale}"
            )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise MedsrError(f"each method must appear once, got {', '.join(names)}")
    return models


def _score_all(
    dataset: Path,
    rows: Sequence[dict[str, str]],
    models: Sequence[SRModel],
    out: Path,
    options: EvalOptions,
    progress: bool,
) -> tuple[list[dict], list[dict]]:
    """Every method on the same LR image of every row: (score records, saved-output index rows)."""
    from tqdm import tqdm

    records: list[dict] = []
    saved: list[dict] = []
    scorer = Scorer(options.metrics, crop_border=options.crop_border)
    scorer.load()
    bar = tqdm(
        total=len(rows), desc=f"evaluate {options.split}", unit="image", disable=not progress, leave=False
    )
    for start in range(0, len(rows), options.batch_size):
        chunk = rows[start : start + options.batch_size]
        pairs = [_load_pair(dataset, row, options) for row in chunk]
        lqs = [lq for _, lq, _ in pairs]
        patients = [patient_of(row) for row in chunk]
        outputs = {model.name: _run_batch(model, lqs) for model in models}
        for name, srs in outputs.items():
            for row, (hr, _, _), sr in zip(chunk, pairs, srs):
                if sr.shape != hr.shape:
                    raise MedsrError(f"{name} returned {sr.shape} for HR {hr.shape} (image {row['id']})")
        # one call for all methods, so that LPIPS/DISTS compute each HR image's features once
        scored = scorer.scores(
            [(sr, hr, mask) for srs in outputs.values() for sr, (hr, _, mask) in zip(srs, pairs)]
        )
        for number, model in enumerate(models):
            srs, scores = outputs[model.name], scored[number * len(chunk) : (number + 1) * len(chunk)]
            for row, patient, sr, score in zip(chunk, patients, srs, scores):
                records.append(
                    {
                        "image_id": row["id"],
                        "patient_id": patient,
                        "modality": row["modality"],
                        "method": model.name,
                        **score,
                    }
                )
                if options.save_outputs:
                    saved.append(save_output(out, row["id"], patient, row["modality"], model.name, sr))
        if options.save_outputs:
            saved += [
                save_output(out, row["id"], patient, row["modality"], REFERENCE, hr)
                for row, patient, (hr, _, _) in zip(chunk, patients, pairs)
            ]
        bar.update(len(chunk))
    bar.close()
    return records, saved


def held_out_check(
    models: Sequence[SRModel], rows: Sequence[dict[str, str]], options: EvalOptions
) -> list[Overlap]:
    """The overlap of each model's training patients with the evaluated split's patients.

    Raises:
        MedsrError: a model saw some of these patients, or its training patients are unknown, and
            ``options.allow_overlap`` is off.
    """
    overlaps = [o for m in models if (o := check_held_out(m.name, m.trained_on, rows, options.split))]
    if overlaps and not options.allow_overlap:
        raise MedsrError(
            f"{overlaps[0].describe()}; its scores would not be held out "
            "(--allow-overlap scores it anyway and marks the results as not held out)"
        )
    return overlaps


def _finite_ids(by_method: dict[str, dict[str, dict]], ids: Sequence[str], metric: str) -> list[str]:
    """The images where every method has a finite ``metric`` (the others are dropped for all methods)."""
    return [i for i in ids if all(np.isfinite(scores[i][metric]) for scores in by_method.values())]


def summary_block(
    records: Sequence[dict],
    names: Sequence[str],
    baseline: str,
    *,
    n_resamples: int = 10_000,
    seed: int = 0,
    metrics: Sequence[str] = METRICS,
) -> dict:
    """Means with intervals per method and paired differences to ``baseline``, over ``records``.

    Returns:
        ``{"n_images", "n_patients", "dropped": {metric: images}, "methods": {name: {metric:
        describe_mean(...)}}, "vs_baseline": {name: {metric: paired_comparison(...)}}}``.
    """
    by_method = {name: {r["image_id"]: r for r in records if r["method"] == name} for name in names}
    ids = list(by_method[names[0]])
    patient = {r["image_id"]: r["patient_id"] for r in records}
    stat = dict(n_resamples=n_resamples, seed=seed)
    block = {
        "n_images": len(ids),
        "n_patients": len({patient[i] for i in ids}),
        "dropped": {},
        "methods": {name: {} for name in names},
        "vs_baseline": {name: {} for name in names if name != baseline},
    }
    for metric in metrics:
        kept = _finite_ids(by_method, ids, metric)
        block["dropped"][metric] = len(ids) - len(kept)
        groups = [patient[i] for i in kept]
        values = {name: [by_method[name][i][metric] for i in kept] for name in names}
        for name in names:
            block["methods"][name][metric] = describe_mean(values[name], groups=groups, **stat)
            if name != baseline:
                block["vs_baseline"][name][metric] = paired_comparison(
                    values[name], values[baseline], groups=groups, **stat
                )
    return block


def _summarize(
    records, names, dataset, rows, models, options: EvalOptions, overlaps: Sequence[Overlap]
) -> dict:
    block = partial(
        summary_block,
        names=names,
        baseline=options.baseline,
        n_resamples=options.n_resamples,
        seed=options.seed,
        metrics=options.columns,
    )
    overall = block(records)
    modalities = sorted({r["modality"] for r in records})
    protocol = {
        "dataset": str(dataset),
        "split": options.split,
        "n_images": len(rows),
        "n_patients": overall["n_patients"],
        "modalities": modalities,
        "degradation": options.degradation.describe(),
        "scale": options.degradation.scale,
        "seed": options.seed,
        "crop_border": options.crop_border,
        "data_range": 1.0,
        "hr_crop": "bottom/right rows and columns cropped to a multiple of the scale",
        "sr_clip": "method outputs clipped to [0, 1]",
        "ssim": f"Gaussian window {SSIM_WINDOW}x{SSIM_WINDOW}, sigma {SSIM_SIGMA}, K1 {SSIM_K1}, K2 {SSIM_K2}, valid region (Wang et al. 2004)",
        "foreground": "body mask of the HR image: above half its Otsu threshold after a sigma-2 blur, closed, holes filled, specks removed",
        "intervals": "cluster t-interval with patients as units (patients - 1 degrees of freedom); patient bootstrap beside it",
        "tests": "exact sign-flip permutation test over per-patient mean differences (primary); Wilcoxon signed-rank over slices (secondary, assumes independent slices)",
        "non_finite": "per metric, an image without a finite score for some method is dropped for every method",
        "resampling": "patient",
        "n_resamples": options.n_resamples,
        "baseline": options.baseline,
        "methods": [m.describe() for m in models],
        "metrics": list(options.metrics),
        "metric_notes": {m: _METRIC_NOTES[m] for m in options.metrics if m in _METRIC_NOTES},
        "held_out": not overlaps,
        "overlap": [o.as_dict() for o in overlaps],
    }
    by_modality = (
        {m: block([r for r in records if r["modality"] == m]) for m in modalities}
        if len(modalities) > 1
        else {}
    )
    return {"protocol": protocol, **overall, "by_modality": by_modality}


_METRIC_NOTES = {
    "ms_ssim": "MS-SSIM: five scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333); images under 161x161 dropped",
    "haarpsi": "HaarPSI: grey, three Haar scales, C 30, alpha 4.2 (as piq 0.8)",
    "gmsd": "GMSD: Prewitt gradients after 2x2 averaging, T 170/255^2; lower is better",
    "hfen": "HFEN: ||LoG(sr) - LoG(hr)|| / ||LoG(hr)||, LoG 15x15 sigma 1.5 (MATLAB fspecial); lower is better",
    "nrmse": "NRMSE: ||sr - hr|| / ||hr||; lower is better",
    "lpips": "LPIPS: VGG16 with the v0.1 linear heads, grey replicated to RGB, [0, 1] mapped to [-1, 1]; lower is better",
    "dists": "DISTS: VGG16 with L2 pooling, the published alpha/beta, grey replicated to RGB, no resizing; lower is better",
}


def _tables_markdown(summary: dict, names: Sequence[str], baseline: str) -> str:
    protocol = summary["protocol"]
    text = [f"# Evaluation: {protocol['split']} split", "", tables.protocol_text(protocol), ""]
    text += [note + "\n" for note in tables.warnings(summary)]
    interpolation = [n for n in names if n in INTERPOLATIONS]
    for title, block in tables.blocks(summary):
        text += [
            f"## Table 2 layout ({title}): methods against {baseline}",
            "",
            tables.table2(block, names, baseline),
            "",
        ]
        more = tables.more_metrics_table(block, names, baseline, columns(protocol.get("metrics", ALWAYS)))
        if more:
            text += [
                f"## More metrics ({title}): mean [95% CI]; difference to {baseline} [95% CI], p",
                "",
                more,
                "",
            ]
        if interpolation:
            text += [
                f"## Table 1 layout ({title}): interpolation methods",
                "",
                tables.table1(block, interpolation),
                "",
            ]
    return "\n".join(text)


def _write_figures(dataset, rows, records, models, folder: Path, options: EvalOptions) -> None:
    """Figures for the chosen images, then the best and worst image of the first non-baseline method."""
    by_id = {row["id"]: row for row in rows}
    chosen = [i for i in options.figure_ids if i in by_id]
    if not options.figure_ids:
        chosen = [
            r["id"]
            for r in sorted(rows, key=lambda r: -float(r["detail_score_norm"] or 0))[: options.n_figures]
        ]
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
        maps = None
        if "lpips" in options.metrics:
            from medsr.metrics.lpips import lpips_map

            maps = {name: lpips_map(sr, hr) for name, sr in outputs.items()}
        comparison_figure(folder / f"{label}_{image_id}.png", hr, lq, outputs, shown, title, mask, maps)
