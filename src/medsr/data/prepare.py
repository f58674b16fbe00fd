"""``medsr prepare``: real images -> a data set of detailed slices with a patient-level split.

Steps (the paper's pre-processing, made honest):
1. survey every file (parallel): read, check, record shape, value range and metadata;
2. fit one intensity mapping per series (CT window, MR percentiles; see ``medsr.io.intensity``);
3. size selection (exactly ``size`` x ``size``, or at least ``min_size`` on both sides);
4. Gaussian filter + pixel difference score (parallel), each slice staged as a 16-bit PNG;
5. keep detailed slices (``above-mean`` by default, as the original code);
6. split by patient; move the kept slices into ``slices/`` and write ``manifest.csv``,
   ``skipped.csv`` and ``prepare.json`` last, atomically.

The manifest is removed at the start and written at the very end, so a data set with a
``manifest.csv`` is always complete; an interrupted run leaves only a hidden staging folder.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsr import __version__
from medsr.choices import DETAIL_SCORES, STRATIFY
from medsr.data.detail import detail_score, normalised_score
from medsr.data.patients import PatientRule, file_root
from medsr.data.split import SPLIT_NAMES, UNUSED, SplitSpec, assign_splits, group_key
from medsr.errors import MedsrError, UnreadableImage
from medsr.fsutil import atomic_write_csv, atomic_write_json, is_within
from medsr.io import iter_image_files, read_slices
from medsr.io.intensity import IntensityPolicy, fit_mapping, policy_from_dict, value_samples
from medsr.io.raster import write_png16
from medsr.io.types import IntensityMapping, SliceMeta
from medsr.io.volume import parse_axes
from medsr.layout import MANIFEST, PREPARE_INFO, SKIPPED, SLICES, STAGING, slice_file

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "id",
    "file",
    "split",
    "source",
    "source_id",
    "frame",
    "format",
    "patient_id",
    "patient_from",
    "study_uid",
    "series_uid",
    "modality",
    "height",
    "width",
    "pixel_spacing",
    "position",
    "axis",
    "detail_score",
    "detail_score_norm",
    "unit",
    "intensity_method",
    "intensity_params",
    "intensity_lo",
    "intensity_hi",
    "intensity_invert",
    "rescale_slope",
    "rescale_intercept",
    "stored_dtype",
)
SKIPPED_COLUMNS = ("source", "reason", "kind")


@dataclass(frozen=True)
class KeepRule:
    """Which slices pass the detail filter: ``above-mean``, ``top:N``, ``min:X`` or ``all``, applied to
    the size-normalised score (``normalised_score``: score / sqrt(H * W) of the [0, 1] image)."""

    kind: str = "above-mean"
    value: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "KeepRule":
        name, _, arg = text.partition(":")
        try:
            if name in ("above-mean", "all") and not arg:
                return cls(name)
            if name == "top" and int(arg) > 0:
                return cls("top", int(arg))
            if name == "min" and float(arg) >= 0:
                return cls("min", float(arg))
        except ValueError:
            pass
        raise ValueError(f"keep rule must be above-mean, all, top:N or min:X; got {text!r}")

    def __str__(self) -> str:
        return self.kind if self.kind in ("above-mean", "all") else f"{self.kind}:{self.value:g}"

    def select(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask of the slices to keep, given their (normalised) detail scores."""
        if scores.size == 0 or self.kind == "all":
            return np.ones(scores.shape, bool)
        if self.kind == "above-mean":
            return scores > scores.mean()
        if self.kind == "min":
            return scores >= self.value
        order = np.argsort(-scores, kind="stable")[: int(self.value)]
        mask = np.zeros(scores.shape, bool)
        mask[order] = True
        return mask


@dataclass(frozen=True)
class PrepareOptions:
    """Settings of ``prepare``: the one source of their defaults.

    ``medsr prepare``'s flags (``--min-size`` sets ``min_size``, ``--patient-id`` sets ``patients``,
    ``--ct-window`` and ``--percentiles`` set ``intensity``) and the ``prepare:`` section of a
    ``medsr run`` config (its keys are those of ``describe()``) state the same defaults;
    ``tests/test_cli.py`` holds them to these. The defaults are the general-purpose choices; a
    protocol such as the paper's (configs/paper.yaml: 512, 1000,200,200) states its own values.
    """

    # exact square size; None = any size >= min_size. 512: CT's and most MR's slice size (and the paper's)
    size: int | None = 512
    min_size: int = 64  # with size None: smallest height and width kept (a x4 LR image of 16 pixels)
    sigma: float = (
        5.0  # Gaussian sigma before the detail score; 5: the authors' code (keeps noise from scoring high)
    )
    keep: KeepRule = KeepRule()  # above-mean, as the authors' code
    # fractions suit a data set of any size; counts (the paper's 1000,200,200) fail on one with fewer images
    split: SplitSpec = SplitSpec(fractions=(0.7, 0.15, 0.15))
    stratify: str = (
        "auto"  # modality: deal each modality's patients separately; auto: when there are several; none
    )
    patients: PatientRule = (
        PatientRule()
    )  # how patients are told apart (medsr.data.patients); auto: the best evidence found
    score: str = "equation-1"  # detail score: equation-1 (as printed) or original-code (the authors' code)
    seed: int = 0  # of the patient split
    axes: tuple[str, ...] = ("axial",)  # volume slice orientations; axial: the plane scanners acquire most
    intensity: IntensityPolicy = (
        IntensityPolicy()
    )  # CT: full 12-bit HU range; MR: percentiles 0..100 (lossless)
    workers: int = field(
        default_factory=lambda: os.cpu_count() or 1
    )  # processes; not part of the data set's description

    @classmethod
    def from_description(cls, description: Mapping[str, object], **extra: object) -> "PrepareOptions":
        """The options ``describe()`` wrote (a ``prepare.json``'s options, a run config's ``prepare:``
        section); keys left out take their defaults, ``extra`` sets the other fields (``workers``).

        Raises:
            ValueError: a value that does not parse (the message names it), or an unknown key.
        """
        values = dict(description)
        unknown = sorted(set(values) - set(cls().describe()))
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown option")
        fields: dict[str, object] = {
            name: values[name]
            for name in ("min_size", "sigma", "stratify", "score", "seed")
            if name in values
        }
        if "size" in values:
            fields["size"] = parse_size(str(values["size"]))
        if "keep" in values:
            fields["keep"] = KeepRule.parse(str(values["keep"]))
        if "split" in values:
            fields["split"] = SplitSpec.parse(str(values["split"]))
        if "patient_id" in values:
            fields["patients"] = PatientRule.parse(str(values["patient_id"]))
        if "axes" in values:
            fields["axes"] = parse_axes(values["axes"])  # type: ignore[arg-type]
        if "ct_window" in values or "percentiles" in values:
            fields["intensity"] = policy_from_dict(
                {k: values[k] for k in ("ct_window", "percentiles") if k in values}
            )
        return cls(**fields, **extra)  # type: ignore[arg-type]

    def describe(self) -> dict:
        """The options as text and numbers (``prepare.json``; the keys of a run config's ``prepare:``)."""
        return {
            "size": self.size if self.size is not None else "any",
            "min_size": self.min_size,
            "sigma": self.sigma,
            "keep": str(self.keep),
            "split": str(self.split),
            "stratify": self.stratify,
            "patient_id": str(self.patients),
            "score": self.score,
            "seed": self.seed,
            "axes": list(self.axes),
            "ct_window": list(self.intensity.ct_window)
            if isinstance(self.intensity.ct_window, tuple)
            else self.intensity.ct_window,
            "percentiles": list(self.intensity.percentiles),
        }


@dataclass
class SliceRecord:
    """One slice as surveyed (no pixels)."""

    id: str
    meta: SliceMeta
    height: int
    width: int
    series_key: str
    mapping: IntensityMapping | None = None
    score: float = float("nan")
    score_norm: float = float("nan")
    split: str = UNUSED


@dataclass
class PrepareResult:
    """What ``prepare`` did; ``errors`` are unreadable inputs, ``filtered`` inputs without a usable slice."""

    dataset: Path
    records: list[SliceRecord]
    skipped: list[dict[str, str]]
    files: int

    warnings: list[str] = field(default_factory=list)

    @property
    def errors(self) -> list[dict[str, str]]:
        return [row for row in self.skipped if row["kind"] == "error"]

    def summary_line(self) -> str:
        counts = Counter(r.split for r in self.records)
        patients = len({group_key(r.meta.patient_id, r.meta.series_uid, r.meta.source) for r in self.records})
        parts = " / ".join(f"{name} {counts.get(name, 0)}" for name in SPLIT_NAMES)
        return (
            f"prepared {len(self.records)} slices of {patients} patients from {self.files} files ({parts}) "
            f"-> {self.dataset}; {len(self.errors)} unreadable, "
            f"{len(self.skipped) - len(self.errors)} without a usable slice (see {SKIPPED})"
        )


def source_id(meta: SliceMeta) -> str:
    """Deterministic id of a slice's source file: a hash of its resolved path (patient-rule free)."""
    return hashlib.sha1(str(Path(meta.source).resolve()).encode()).hexdigest()[:16]


def slice_id(meta: SliceMeta) -> str:
    """Deterministic id of a slice: modality plus a hash of its source path and frame number."""
    digest = hashlib.sha1(f"{Path(meta.source).resolve()}|{meta.frame}".encode()).hexdigest()[:16]
    return f"{meta.modality.lower() or 'ot'}-{digest}"


def _series_key(meta: SliceMeta) -> str:
    if meta.format == "dicom" and meta.series_uid:
        return f"dicom:{meta.series_uid}"
    return f"file:{meta.source}"


# ---------------------------------------------------------------- workers (run in subprocesses)


def _survey(
    args: tuple[str, tuple[str, ...]],
) -> tuple[str, list[tuple[SliceMeta, int, int, np.ndarray]], list[tuple[str, str]]]:
    """Read one file; per slice return (meta, height, width, value samples) and per-slice problems."""
    path, axes = args
    try:
        slices = read_slices(path, axes=axes)
    except UnreadableImage as exc:
        return path, [], [(path, str(exc))]
    except Exception as exc:  # a reader bug must not stop the batch
        return path, [], [(path, f"unexpected error ({type(exc).__name__}: {exc})")]
    surveyed, problems = [], []
    for item in slices:
        pixels = item.pixels
        if not np.all(np.isfinite(pixels)):
            problems.append((f"{path}#frame={item.meta.frame}", "NaN/Inf values in the image"))
            continue
        surveyed.append((item.meta, pixels.shape[0], pixels.shape[1], value_samples(pixels)))
    return path, surveyed, problems


def _score_and_stage(
    args: tuple[str, tuple[str, ...], dict[int, tuple[str, IntensityMapping]], float, str, str],
) -> list[tuple[int, float]]:
    """Read one file again; for each wanted frame map to [0, 1], score, and stage it as PNG16."""
    path, axes, wanted, sigma, method, staging = args
    results = []
    try:
        slices = read_slices(path, axes=axes)
    except Exception:  # the file changed since the survey; its slices drop out unscored
        return results
    for item in slices:
        if item.meta.frame not in wanted:
            continue
        record_id, mapping = wanted[item.meta.frame]
        unit = mapping.to_unit(item.pixels)
        results.append((item.meta.frame, detail_score(unit, sigma=sigma, method=method)))
        write_png16(Path(staging) / f"{record_id}.png", unit)
    return results


# ---------------------------------------------------------------- orchestration


def _run_parallel(
    function: Callable, tasks: Sequence, workers: int, description: str, progress: bool
) -> list:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc=description, unit="file", disable=not progress, leave=False)
    try:
        if workers <= 1 or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(function(task))
                bar.update()
            return results
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = []
            for result in pool.map(function, tasks, chunksize=max(1, min(16, len(tasks) // (workers * 8)))):
                results.append(result)
                bar.update()
            return results
    finally:
        bar.close()


def _size_ok(height: int, width: int, options: PrepareOptions) -> bool:
    if options.size is not None:
        return height == options.size and width == options.size
    return min(height, width) >= options.min_size


def _manifest_row(record: SliceRecord) -> dict[str, object]:
    meta, mapping = record.meta, record.mapping
    assert mapping is not None
    spacing = meta.pixel_spacing
    return {
        "id": record.id,
        "file": slice_file(record.id),
        "split": record.split,
        "source": meta.source,
        "source_id": source_id(meta),
        "frame": meta.frame,
        "format": meta.format,
        "patient_id": meta.patient_id,
        "patient_from": meta.extra.get("patient_from", ""),
        "study_uid": meta.study_uid,
        "series_uid": meta.series_uid,
        "modality": meta.modality,
        "height": record.height,
        "width": record.width,
        "pixel_spacing": f"{spacing[0]:g} {spacing[1]:g}" if spacing else "",
        "position": "" if meta.position is None else f"{meta.position:g}",
        "axis": meta.extra.get("axis", ""),
        "detail_score": repr(record.score),
        "detail_score_norm": repr(record.score_norm),
        "unit": meta.unit,
        "intensity_method": mapping.method,
        "intensity_params": mapping.params,
        "intensity_lo": repr(mapping.lo),
        "intensity_hi": repr(mapping.hi),
        "intensity_invert": int(mapping.invert),
        "rescale_slope": repr(meta.rescale_slope),
        "rescale_intercept": repr(meta.rescale_intercept),
        "stored_dtype": meta.stored_dtype,
    }


def check_options(options: PrepareOptions) -> None:
    """Refuse inconsistent options before any file is read.

    Raises:
        MedsrError: unknown stratify or score value, stratifying a split given as counts, a
            negative or non-finite sigma, a minimum size or worker count below 1.
    """
    if options.stratify not in STRATIFY:
        raise MedsrError(f"stratify must be one of {', '.join(STRATIFY)}; got {options.stratify!r}")
    if options.stratify == "modality" and options.split.counts is not None:
        raise MedsrError("stratifying needs a split given as fractions (e.g. 0.7,0.15,0.15)")
    if options.score not in DETAIL_SCORES:
        raise MedsrError(f"score must be one of {', '.join(DETAIL_SCORES)}; got {options.score!r}")
    if not (math.isfinite(options.sigma) and options.sigma >= 0):
        raise MedsrError(f"sigma must be a number >= 0; got {options.sigma}")
    if options.min_size < 1:
        raise MedsrError(f"min_size must be at least 1; got {options.min_size}")
    if options.workers < 1:
        raise MedsrError(f"workers must be at least 1; got {options.workers}")


def _discover(sources: Sequence[Path], out: Path) -> dict[str, Path]:
    """Every image file under ``sources`` (never inside ``out``, each once) and the root its patient
    is resolved against: a folder source is its own root, files given directly share their deepest
    common folder, and a file reached through nested sources takes the outermost one."""
    for source in sources:
        if not source.exists():
            raise MedsrError(f"{source}: no such file or folder")
        if is_within(source, out):
            raise MedsrError(f"{source}: the data set folder {out} cannot also be a source")
    if out.exists() and not out.is_dir():
        raise MedsrError(f"{out}: exists and is not a folder")
    direct = [s for s in sources if not s.is_dir()]
    groups = [(s, [s]) for s in sources if s.is_dir()] + ([(file_root(direct), direct)] if direct else [])
    files: dict[str, tuple[str, Path]] = {}  # resolved path -> (path as found, root)
    for root, members in sorted(groups, key=lambda group: len(os.path.abspath(group[0]))):  # outermost first
        for path in iter_image_files(members):
            if not is_within(path, out):
                files.setdefault(str(path.resolve()), (str(path), root))
    return {found: root for found, root in files.values()}


def _survey_files(
    files: dict[str, Path], options: PrepareOptions, progress: bool
) -> tuple[list[SliceRecord], dict[str, list[np.ndarray]], list[dict[str, str]]]:
    """Survey every file (in parallel) and give each slice its patient; unreadable files and files
    without a patient under the rule are listed in the returned skipped rows."""
    skipped: list[dict[str, str]] = []
    records: list[SliceRecord] = []
    samples: dict[str, list[np.ndarray]] = defaultdict(list)
    for path, surveyed, problems in _run_parallel(
        _survey, [(f, options.axes) for f in files], options.workers, "survey", progress
    ):
        skipped.extend({"source": src, "reason": reason, "kind": "error"} for src, reason in problems)
        for meta, height, width, values in surveyed:
            patient = options.patients.resolve(meta, Path(path), files[path])
            if patient is None:
                skipped.append(
                    {"source": path, "reason": options.patients.missing_reason(), "kind": "filtered"}
                )
                break
            meta.patient_id, meta.extra["patient_from"] = patient
            key = _series_key(meta)
            samples[key].append(values)
            records.append(SliceRecord(slice_id(meta), meta, height, width, key))
    return records, samples, skipped


def _split(kept: Sequence[SliceRecord], options: PrepareOptions) -> tuple[bool, list[str]]:
    """Deal ``kept`` to the splits by patient (setting ``record.split``).

    Returns:
        Whether the deal was stratified by modality (``auto``: when the split is fractions and
        there are several modalities, unless that leaves a wanted split empty and a plain deal
        does not), and warnings (a wanted split left empty).
    """
    modalities = {r.meta.modality for r in kept}
    keys = [group_key(r.meta.patient_id, r.meta.series_uid, r.meta.source) for r in kept]
    strata = [r.meta.modality for r in kept]
    wanted = {
        name
        for name, part in zip(SPLIT_NAMES, options.split.counts or options.split.fractions or ())
        if part > 0
    }
    auto = options.stratify == "auto" and options.split.counts is None and len(modalities) > 1
    stratify = options.stratify == "modality" or auto
    splits = assign_splits(keys, options.split, seed=options.seed, strata=strata if stratify else None)
    warnings = []
    if auto and wanted - set(splits):
        plain = assign_splits(keys, options.split, seed=options.seed)
        if not wanted - set(plain):
            warnings.append(
                f"not stratified by modality: dealing each modality's patients separately left the "
                f"{', '.join(sorted(wanted - set(splits)))} split empty (too few patients per modality)"
            )
            splits, stratify = plain, False
    for name in sorted(wanted - set(splits)):
        warnings.append(
            f"the {name} split is empty: {len(set(keys))} patients are too few for the split {options.split}"
        )
    for record, name in zip(kept, splits):
        record.split = name
    return stratify, warnings


def _patient_warnings(records: Sequence[SliceRecord]) -> list[str]:
    """Warn when every slice is its own patient: slices of one person may then land in several splits."""
    patients = {group_key(r.meta.patient_id, r.meta.series_uid, r.meta.source) for r in records}
    if len(records) > 1 and len(patients) == len(records):
        return [
            f"every one of the {len(records)} images is its own patient (no patient id found in the files); if some "
            "show the same person, say how to tell patients apart with --patient-id folder or regex:PATTERN"
        ]
    return []


def prepare(
    sources: Iterable[str | Path],
    out: str | Path,
    options: PrepareOptions = PrepareOptions(),
    *,
    progress: bool = False,
) -> PrepareResult:
    """Build a data set from image files and folders (see the module docstring).

    Args:
        sources: files and folders (walked recursively); never modified.
        out: data set folder; created if needed. Re-running with the same inputs and options
            gives the same data set.
        options: size/detail/split/intensity/patient settings.
        progress: show progress bars on stderr.

    Returns:
        A ``PrepareResult``; unreadable or unusable inputs are listed in ``skipped``, never raised;
        ``warnings`` holds what the user should know about the split (e.g. one image per patient).

    Raises:
        MedsrError: bad options, a source does not exist, nothing usable was found, or the split
            cannot be met.
    """
    check_options(options)
    out = Path(out)
    files = _discover([Path(s) for s in sources], out)
    staging = _start_dataset(out)
    records, samples, skipped = _survey_files(files, options, progress)
    _fit_mappings(records, samples, options.intensity)
    sized = _select_sizes(records, skipped, options)
    sized = _score_slices(sized, staging, options, progress)
    skipped.sort(key=lambda row: (row["kind"], row["source"]))
    if not sized:
        shutil.rmtree(staging, ignore_errors=True)
        atomic_write_csv(out / SKIPPED, SKIPPED_COLUMNS, skipped)
        raise MedsrError(
            f"no usable slice of size {_wanted_size(options)} in {len(files)} files; "
            f"the reasons are in {out / SKIPPED}"
        )
    kept = [r for r, keep in zip(sized, options.keep.select(np.array([r.score_norm for r in sized]))) if keep]
    stratified, split_warnings = _split(kept, options)
    warnings = _patient_warnings(records) + split_warnings
    final = [r for r in kept if r.split != UNUSED]
    _move_slices(final, staging, out / SLICES)
    final.sort(key=lambda r: (SPLIT_NAMES.index(r.split), r.meta.patient_id, r.meta.source, r.meta.frame))
    atomic_write_csv(out / SKIPPED, SKIPPED_COLUMNS, skipped)
    atomic_write_json(
        out / PREPARE_INFO,
        {
            **_describe(final, sized, kept, skipped, files, options),
            "stratified_by_modality": stratified,
            "warnings": warnings,
        },
    )
    atomic_write_csv(out / MANIFEST, MANIFEST_COLUMNS, (_manifest_row(r) for r in final))
    return PrepareResult(out, final, skipped, len(files), warnings)


def _start_dataset(out: Path) -> Path:
    """Create ``out``, remove its manifest (the data set is incomplete until the end) and give an
    empty staging folder inside it."""
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    staging = out / STAGING
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def _fit_mappings(
    records: Sequence[SliceRecord], samples: dict[str, list[np.ndarray]], policy: IntensityPolicy
) -> None:
    """Fit one intensity mapping per series (from its values and its first slice's metadata) and
    give it to every slice of the series."""
    first_meta = {r.series_key: r.meta for r in reversed(records)}
    mappings = {
        key: fit_mapping(first_meta[key], np.concatenate(parts), policy) for key, parts in samples.items()
    }
    for record in records:
        record.mapping = mappings[record.series_key]


def _wanted_size(options: PrepareOptions) -> str:
    """The size rule in words: ``512x512`` or ``at least 64 on each side``."""
    return f"{options.size}x{options.size}" if options.size else f"at least {options.min_size} on each side"


def _select_sizes(
    records: Sequence[SliceRecord], skipped: list[dict[str, str]], options: PrepareOptions
) -> list[SliceRecord]:
    """The slices of the wanted size; each source without one is added to ``skipped``."""
    sized = [r for r in records if _size_ok(r.height, r.width, options)]
    usable_sources = {r.meta.source for r in sized}
    for source, shapes in _shapes_by_source(records).items():
        if source not in usable_sources:
            skipped.append(
                {
                    "source": source,
                    "reason": f"no slice of size {_wanted_size(options)} (found {shapes})",
                    "kind": "filtered",
                }
            )
    return sized


def _score_slices(
    sized: Sequence[SliceRecord], staging: Path, options: PrepareOptions, progress: bool
) -> list[SliceRecord]:
    """Score every sized slice and stage it as PNG16 (in parallel, one task per source file);
    returns the slices that got a finite score."""
    by_source: dict[str, dict[int, SliceRecord]] = defaultdict(dict)
    for record in sized:
        by_source[record.meta.source][record.meta.frame] = record
    tasks = [
        (
            source,
            options.axes,
            {f: (r.id, r.mapping) for f, r in frames.items()},
            options.sigma,
            options.score,
            str(staging),
        )
        for source, frames in by_source.items()
    ]
    for (source, *_), results in zip(
        tasks, _run_parallel(_score_and_stage, tasks, options.workers, "score", progress)
    ):
        for frame, score in results:
            record = by_source[source][frame]
            record.score = score
            record.score_norm = normalised_score(score, (record.height, record.width))
    return [r for r in sized if np.isfinite(r.score)]


def _move_slices(final: Sequence[SliceRecord], staging: Path, slices_dir: Path) -> None:
    """Move the final slices from ``staging`` into ``slices_dir``, remove the slices of an earlier
    run that are no longer in the data set, then the staging folder."""
    slices_dir.mkdir(exist_ok=True)
    for record in final:
        os.replace(staging / f"{record.id}.png", slices_dir / f"{record.id}.png")
    keep_names = {f"{r.id}.png" for r in final}
    for stale in slices_dir.glob("*.png"):
        if stale.name not in keep_names:
            stale.unlink()
    shutil.rmtree(staging, ignore_errors=True)


def _shapes_by_source(records: Sequence[SliceRecord]) -> dict[str, str]:
    shapes: dict[str, set[str]] = defaultdict(set)
    for record in records:
        shapes[record.meta.source].add(f"{record.height}x{record.width}")
    return {source: ", ".join(sorted(values)[:3]) for source, values in shapes.items()}


def _describe(final, sized, kept, skipped, files, options: PrepareOptions) -> dict:
    per_split: dict[str, dict] = {}
    for name in SPLIT_NAMES:
        members = [r for r in final if r.split == name]
        per_split[name] = {
            "slices": len(members),
            "patients": sorted(
                {group_key(r.meta.patient_id, r.meta.series_uid, r.meta.source) for r in members}
            ),
            "modalities": dict(sorted(Counter(r.meta.modality for r in members).items())),
        }
    return {
        "medsr_version": __version__,
        "options": options.describe(),
        "counts": {
            "files": len(files),
            "unreadable": sum(1 for row in skipped if row["kind"] == "error"),
            "size_selected": len(sized),
            "detail_kept": len(kept),
            "in_splits": len(final),
        },
        "detail_score_norm_mean": float(np.mean([r.score_norm for r in sized])) if sized else None,
        "splits": per_split,
    }


def parse_size(text: str) -> int | None:
    """``"512"`` -> 512, ``"any"`` -> None."""
    if text == "any":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError(f"size must be a positive integer or 'any'; got {text!r}")
