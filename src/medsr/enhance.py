"""``medsr enhance``: super-resolve a user's own scans into files their viewer opens.

This module only orchestrates: it reads with ``medsr.io``, runs the model, and writes with
``medsr.io.write_like``. DICOM files, series folders and trees become derived DICOM series
(``medsr.io.dicom_write``); NIfTI and NRRD volumes are super-resolved slice by slice in their first
two voxel axes and written with an affine/space directions scaled so that they overlay the
original; PNG/TIFF become 16-bit PNG/TIFF. Values go to [0, 1] through the intensity mapping the
model was trained with, and come back through its inverse into the original units and bit depth.
Inputs are never modified; the output folder may not be an input; a failing file is reported and
the others are still written.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from medsr.choices import DEFAULT_BATCH, DEFAULT_TILE
from medsr.enhance_state import (
    STATE_DIR,
    Shard,
    agree,
    assign,
    coordinated,
    forget,
    is_done,
    mark_done,
    model_identity,
)
from medsr.errors import MedsrError, UnreadableImage
from medsr.fsutil import is_within
from medsr.infer import enhance_tiled
from medsr.io import detect_format, iter_image_files, read_slices, read_volume, write_like
from medsr.io.intensity import IntensityPolicy, fit_mapping, policy_from_dict, value_samples
from medsr.io.types import IntensityMapping, Volume
from medsr.models.base import SRModel

log = logging.getLogger(__name__)
_FILE_SUFFIXES = (".dcm", ".nii", ".nii.gz", ".nrrd", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class EnhanceOptions:
    tile: int = DEFAULT_TILE  # LR tile side
    blend: int = 8
    batch: int = DEFAULT_BATCH  # tiles per forward pass


@dataclass
class EnhanceReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # jobs an earlier run finished with this model
    notices: list[str] = field(default_factory=list)  # inputs left alone, with the reason
    shard: Shard = Shard()

    def summary_line(self, out: Path) -> str:
        who = f"process {self.shard.rank + 1} of {self.shard.world}: " if self.shard.world > 1 else ""
        done = f", {len(self.skipped)} already done (skipped)" if self.skipped else ""
        left = f", {len(self.notices)} left as they are" if self.notices else ""
        return (
            f"{who}{len(self.written)} files written to {out}, {len(self.failed)} inputs failed{done}{left}"
        )


class _Runner:
    """Holds the model and settings; turns [0, 1] slices into [0, 1] SR slices."""

    def __init__(
        self, model: SRModel, options: EnhanceOptions, progress: Callable[[int], None] | None
    ) -> None:
        self.model, self.options, self.progress = model, options, progress
        self.policy: IntensityPolicy = (
            policy_from_dict(model.intensity) if model.intensity else IntensityPolicy()
        )

    def unit(self, image: np.ndarray) -> np.ndarray:
        return enhance_tiled(
            self.model,
            image,
            tile=self.options.tile,
            blend=self.options.blend,
            batch=self.options.batch,
            on_tile=self.progress,
        )

    def physical(
        self, values: np.ndarray, mapping: IntensityMapping, limits: tuple[float, float]
    ) -> np.ndarray:
        """Physical values (H, W) -> float32 SR physical values (sH, sW) through ``mapping``, kept
        inside ``limits`` (the range of the source series: SR adds detail, not new extremes).
        Computed in place in the float32 output, so a 16000 x 16000 result needs 1 GB, not 4."""
        sr = self.unit(mapping.to_unit(values))
        mapping.from_unit(sr, out=sr)
        return np.clip(sr, *limits, out=sr)


def output_paths(files: Sequence[Path], inputs: Sequence[Path], out: Path) -> dict[Path, Path]:
    """Where each file's result goes: ``out`` itself for one input file and a file-like ``out``;
    else ``out/NAME`` for an input file and ``out/REL`` (one folder input) or ``out/FOLDER/REL``
    (several inputs) for a file at ``REL`` under an input folder.

    Raises:
        MedsrError: two different files would be written to the same place.
    """
    single_file_target = (
        len(inputs) == 1 and inputs[0].is_file() and out.name.lower().endswith(_FILE_SUFFIXES)
    )
    mapping: dict[Path, Path] = {}
    for path in files:
        if single_file_target:
            mapping[path] = out
            continue
        root = next(i for i in inputs if i == path or (i.is_dir() and is_within(path, i)))
        if root == path:
            mapping[path] = out / path.name
        else:
            mapping[path] = (
                out / path.relative_to(root) if len(inputs) == 1 else out / root.name / path.relative_to(root)
            )
    _check_distinct(mapping)
    return mapping


def _check_distinct(mapping: dict[Path, Path]) -> None:
    """Raise ``MedsrError`` when two different source files map to one target."""
    sources: dict[Path, Path] = {}
    for path, target in mapping.items():
        other = sources.setdefault(target, path)
        if other != path:
            raise MedsrError(
                f"{other} and {path} would both be written to {target}; enhance them in separate runs"
            )


def _enhance_volume(runner: _Runner, volume: Volume) -> np.ndarray:
    """Super-resolve every (X, Y) plane of ``volume.data`` (X, Y, ...) -> float64 physical values
    (X*s, Y*s, ...), with one intensity mapping and value range for the whole volume."""
    data = volume.data
    mapping = fit_mapping(volume.meta, data, runner.policy)
    limits = (float(data.min()), float(data.max()))
    s = runner.model.scale
    planes = data.reshape(data.shape[0], data.shape[1], -1)
    out = np.empty((planes.shape[0] * s, planes.shape[1] * s, planes.shape[2]), dtype=np.float64)
    for k in range(planes.shape[2]):
        out[:, :, k] = runner.physical(planes[:, :, k], mapping, limits)
    return out.reshape((data.shape[0] * s, data.shape[1] * s, *data.shape[2:]))


def _enhance_dicom_series(
    runner: _Runner, paths: list[Path], targets: dict[Path, Path], report: EnhanceReport
) -> None:
    """One derived series for one source series: a shared intensity mapping, value range and
    Series Instance UID; each file's frames go through the model into a derived file."""
    from pydicom.uid import generate_uid

    samples, first = [], None
    for path in paths:  # first pass: the series' value range, one file in memory at a time
        for item in read_slices(path):
            samples.append(value_samples(item.pixels))
            first = first or item.meta
    values = np.concatenate(samples)
    mapping = fit_mapping(first, values, runner.policy)
    limits = (float(values.min()), float(values.max()))
    series_uid = generate_uid()
    for path in paths:
        frames = (runner.physical(item.pixels, mapping, limits) for item in read_slices(path))
        write_like(
            path,
            frames,
            targets[path],
            scale=runner.model.scale,
            model_name=runner.model.label,
            series_uid=series_uid,
        )
        report.written.append(targets[path])


def _enhance_volume_file(runner: _Runner, path: Path, target: Path) -> None:
    """A NIfTI or NRRD volume, super-resolved plane by plane in its first two voxel axes."""
    write_like(path, _enhance_volume(runner, read_volume(path)), target, scale=runner.model.scale)


def _enhance_raster(runner: _Runner, path: Path, target: Path) -> None:
    """Each page of a PNG/TIFF through its own (dtype-range) mapping to [0, 1] and the model."""
    pages = read_slices(path)
    outputs = (
        runner.unit(fit_mapping(item.meta, item.pixels, runner.policy).to_unit(item.pixels)) for item in pages
    )
    write_like(path, outputs, target, scale=runner.model.scale)


def check_inputs(inputs: Sequence[Path], out: Path) -> None:
    """Raise ``MedsrError`` for a missing input, or an ``out`` that is or holds an input."""
    for path in inputs:
        if not path.exists():
            raise MedsrError(f"{path}: no such file or folder")
        if path.resolve() == out.resolve() or is_within(path, out):
            raise MedsrError(
                f"{out}: the output may not be an input or contain one ({path}); choose another -o"
            )


@dataclass
class JobPlan:
    """What a run does, as plain data (sent from the first process to the others): one group of
    paths per job (a DICOM series, or one file) with its kind, and the files no reader recognises."""

    jobs: list[tuple[str, list[Path]]] = field(default_factory=list)  # (kind, paths)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def require_images(plan: JobPlan, inputs: Sequence[Path]) -> None:
    """Raise ``MedsrError`` when the inputs hold no candidate image file at all (an empty folder,
    or only sidecars): a run that would write nothing must not look like a finished one."""
    if not plan.jobs and not plan.unreadable:
        raise MedsrError(f"{', '.join(str(p) for p in inputs)}: no image files found")


def plan_jobs(files: Sequence[Path]) -> JobPlan:
    """DICOM files grouped by Series Instance UID (a file without one is its own series), sorted by
    UID, then every other file with its format, in ``files`` order."""
    from medsr.io.dicom import read_dicom_header

    plan = JobPlan()
    series: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        try:
            kind = detect_format(path)
            if kind in ("dicom", "dicom-nopreamble"):
                header = read_dicom_header(path, force=kind == "dicom-nopreamble")
                series[str(header.get("SeriesInstanceUID", "") or path)].append(path)
            elif kind is None:
                raise UnreadableImage("not a recognised image format (DICOM, NIfTI, NRRD, PNG or TIFF)")
            else:
                plan.jobs.append((kind, [path]))
        except UnreadableImage as exc:
            plan.unreadable.append((str(path), str(exc)))
    plan.jobs[:0] = [("dicom", paths) for _, paths in sorted(series.items())]
    return plan


@dataclass(frozen=True)
class _Job:
    name: str  # what to name on failure
    sources: tuple[Path, ...]  # the files it reads (one DICOM series, or one file)
    work: Callable[[], None]

    def weight(self) -> int:
        """Input bytes (how sharding balances the processes)."""
        return sum(p.stat().st_size for p in self.sources if p.exists())


def _jobs(plan: JobPlan, targets: dict[Path, Path], runner: _Runner, report: EnhanceReport) -> list[_Job]:
    """The work of each job of ``plan``."""
    writers = {"nifti": _enhance_volume_file, "nrrd": _enhance_volume_file, "raster": _enhance_raster}
    jobs = []
    for kind, paths in plan.jobs:
        if kind == "dicom":
            name = str(paths[0].parent if len(paths) > 1 else paths[0])
            jobs.append(
                _Job(name, tuple(paths), partial(_enhance_dicom_series, runner, paths, targets, report))
            )
            continue

        def job(p: Path = paths[0], k: str = kind) -> None:
            writers[k](runner, p, targets[p])
            report.written.append(targets[p])

        jobs.append(_Job(str(paths[0]), (paths[0],), job))
    return jobs


def enhance_paths(
    inputs: Sequence[str | Path],
    out: str | Path,
    model: SRModel,
    options: EnhanceOptions = EnhanceOptions(),
    *,
    progress: bool = False,
    shard: Shard | None = None,
) -> EnhanceReport:
    """Super-resolve every image under ``inputs`` into ``out`` (see the module docstring and
    ``output_paths`` for where each result goes).

    Args:
        shard: this process's rank among ``world`` processes (default: the only one); it does only
            its own jobs (whole DICOM series or files: ``enhance_state``). Jobs an earlier run
            finished with the same model from the same inputs are skipped.

    Raises:
        MedsrError: a missing input, ``out`` equal to (or holding) an input, or two inputs whose
            results would land on the same file.
    """
    from tqdm import tqdm

    shard = shard or Shard()
    inputs = [Path(p) for p in inputs]
    out = Path(out)
    check_inputs(inputs, out)
    plan = None
    if shard.rank == 0 or not coordinated(shard):
        plan = plan_jobs([f for f in iter_image_files(inputs) if not is_within(f, out)])
    plan = agree(plan, shard)
    require_images(plan, inputs)
    targets = output_paths([p for _, paths in plan.jobs for p in paths], inputs, out)
    state = None if set(targets.values()) == {out} else out / STATE_DIR  # a folder of outputs
    report = EnhanceReport(shard=shard, failed=list(plan.unreadable) if shard.rank == 0 else [])
    bar = tqdm(desc="enhance", unit="tile", disable=not progress, leave=False)
    runner = _Runner(model, options, bar.update)
    jobs = _jobs(plan, targets, runner, report)
    identity = model_identity(model, options.tile)
    for job, rank in zip(jobs, assign([job.weight() for job in jobs], shard.world)):
        if rank != shard.rank:
            continue
        outputs = [targets[p] for p in job.sources]
        if is_done(state, job.sources, outputs, identity):
            report.skipped.append(job.name)
            continue
        forget(state, outputs)
        try:
            job.work()
            mark_done(state, job.sources, outputs, identity)
        except (UnreadableImage, MedsrError, OSError, ValueError) as exc:
            report.failed.append((job.name, str(exc) or type(exc).__name__))
            log.info("enhance failed for %s", job.name, exc_info=True)
    bar.close()
    return report
