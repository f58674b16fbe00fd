"""``medsr enhance``: super-resolve a user's own scans into files their viewer opens.

DICOM files, series folders and trees become derived DICOM series (``medsr.io.dicom_write``);
NIfTI and NRRD volumes are super-resolved slice by slice in their first two voxel axes and written
with an affine/space directions scaled so that they overlay the original; PNG/TIFF become 16-bit
PNG/TIFF. Values go to [0, 1] through the intensity mapping the model was trained with, and come
back through its inverse into the original units and bit depth. Inputs are never modified; the
output folder may not be an input; a failing file is reported and the others are still written.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsr.errors import MedsrError, UnreadableImage
from medsr.fsutil import is_within
from medsr.infer import enhance_tiled
from medsr.io import detect_format, iter_image_files, read_slices
from medsr.io.intensity import IntensityPolicy, fit_mapping, policy_from_dict, value_samples
from medsr.io.types import IntensityMapping
from medsr.models.base import SRModel

log = logging.getLogger(__name__)
_FILE_SUFFIXES = (".dcm", ".nii", ".nii.gz", ".nrrd", ".png", ".tif", ".tiff")


@dataclass(frozen=True)
class EnhanceOptions:
    tile: int = 256  # LR tile side
    blend: int = 8
    batch: int = 4  # tiles per forward pass


@dataclass
class EnhanceReport:
    written: list[Path] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary_line(self, out: Path) -> str:
        return f"{len(self.written)} files written to {out}, {len(self.failed)} inputs failed"


class _Runner:
    """Holds the model and settings; turns [0, 1] slices into [0, 1] SR slices."""

    def __init__(self, model: SRModel, options: EnhanceOptions, progress: Callable[[int], None] | None) -> None:
        self.model, self.options, self.progress = model, options, progress
        self.policy: IntensityPolicy = policy_from_dict(model.intensity) if model.intensity else IntensityPolicy()

    def unit(self, image: np.ndarray) -> np.ndarray:
        return enhance_tiled(self.model, image, tile=self.options.tile, blend=self.options.blend,
                             batch=self.options.batch, on_tile=self.progress)

    def physical(self, values: np.ndarray, mapping: IntensityMapping, limits: tuple[float, float]) -> np.ndarray:
        """Physical values (H, W) -> float32 SR physical values (sH, sW) through ``mapping``, kept
        inside ``limits`` (the range of the source series: SR adds detail, not new extremes).
        Computed in place in the float32 output, so a 16000 x 16000 result needs 1 GB, not 4."""
        sr = self.unit(mapping.to_unit(values))
        mapping.from_unit(sr, out=sr)
        return np.clip(sr, *limits, out=sr)


def _output_paths(files: Sequence[Path], inputs: Sequence[Path], out: Path) -> dict[Path, Path]:
    single_file_target = len(inputs) == 1 and inputs[0].is_file() and out.name.lower().endswith(_FILE_SUFFIXES)
    mapping = {}
    for path in files:
        if single_file_target:
            mapping[path] = out
            continue
        root = next(i for i in inputs if i == path or (i.is_dir() and is_within(path, i)))
        relative = Path(path.name) if root == path else path.relative_to(root)
        mapping[path] = out / relative if len(inputs) == 1 else out / root.name / relative
    return mapping


def _atomic(target: Path, write: Callable[[Path], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp{suffix}")
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _enhance_dicom_series(runner: _Runner, paths: list[Path], targets: dict[Path, Path], report: EnhanceReport) -> None:
    import pydicom
    from pydicom.uid import generate_uid

    from medsr.io.dicom_write import derived_dataset, stored_values, write_dataset

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
        items = read_slices(path)
        source = pydicom.dcmread(str(path))
        frames = np.stack([stored_values(runner.physical(item.pixels, mapping, limits), source, item.meta.frame) for item in items])
        derived = derived_dataset(source, frames, scale=runner.model.scale, series_uid=series_uid, model_name=runner.model.name)
        write_dataset(derived, targets[path])
        report.written.append(targets[path])


def _enhance_nifti(runner: _Runner, path: Path, target: Path) -> None:
    import nibabel as nib

    from medsr.io.sidecar import read_sidecar
    from medsr.io.types import SliceMeta

    image = nib.load(str(path))
    data = np.asarray(image.dataobj, dtype=np.float32)
    if data.ndim not in (2, 3, 4) or not np.all(np.isfinite(data)):
        raise UnreadableImage("expected a finite 2-D, 3-D or 4-D volume")
    meta = SliceMeta(source=str(path), format="nifti", modality=read_sidecar(path).get("Modality", "MR"))
    mapping = fit_mapping(meta, data, runner.policy)
    limits = (float(data.min()), float(data.max()))
    s = runner.model.scale
    volume = data.reshape(data.shape[0], data.shape[1], -1)
    out = np.empty((volume.shape[0] * s, volume.shape[1] * s, volume.shape[2]), dtype=np.float64)
    for k in range(volume.shape[2]):
        out[:, :, k] = runner.physical(volume[:, :, k], mapping, limits)
    out = out.reshape((data.shape[0] * s, data.shape[1] * s, *data.shape[2:]))
    voxel = np.diag([1.0 / s, 1.0 / s, 1.0, 1.0])
    voxel[:2, 3] = (1.0 / s - 1.0) / 2.0  # new voxel centres inside the old voxels
    affine = image.affine @ voxel
    header = image.header.copy()
    dtype = image.get_data_dtype()
    slope, inter = image.header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        stored = np.clip(np.rint((out - inter) / slope), info.min, info.max).astype(dtype)
    else:
        stored, slope, inter = out.astype(dtype), 1.0, 0.0
    result = nib.Nifti1Image(stored, affine, header=header)
    result.header.set_slope_inter(slope, inter)
    result.header.set_xyzt_units(*image.header.get_xyzt_units())
    _atomic(target, lambda tmp: nib.save(result, str(tmp)))


def _enhance_nrrd(runner: _Runner, path: Path, target: Path) -> None:
    import nrrd

    from medsr.io.sidecar import read_sidecar
    from medsr.io.types import SliceMeta

    data, header = nrrd.read(str(path))
    if data.ndim not in (2, 3) or not np.all(np.isfinite(data)):
        raise UnreadableImage("expected a finite 2-D or 3-D NRRD")
    modality = read_sidecar(path).get("Modality", "OT")
    mapping = fit_mapping(SliceMeta(source=str(path), format="nrrd", modality=modality), data.astype(np.float32), runner.policy)
    limits = (float(data.min()), float(data.max()))
    s = runner.model.scale
    volume = data.reshape(data.shape[0], data.shape[1], -1).astype(np.float32)
    out = np.empty((volume.shape[0] * s, volume.shape[1] * s, volume.shape[2]), dtype=np.float64)
    for k in range(volume.shape[2]):
        out[:, :, k] = runner.physical(volume[:, :, k], mapping, limits)
    out = out.reshape((data.shape[0] * s, data.shape[1] * s, *data.shape[2:]))
    if np.issubdtype(data.dtype, np.integer):
        info = np.iinfo(data.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(data.dtype)
    header = dict(header)
    header.pop("sizes", None)
    directions = header.get("space directions")
    if directions is not None:
        directions = np.array(directions, dtype=float)
        if "space origin" in header:
            shift = -(1.0 - 1.0 / s) / 2.0
            header["space origin"] = np.asarray(header["space origin"], float) + shift * (directions[0] + directions[1])
        directions[:2] = directions[:2] / s
        header["space directions"] = directions
    elif header.get("spacings") is not None:
        spacings = list(header["spacings"])
        spacings[0], spacings[1] = spacings[0] / s, spacings[1] / s
        header["spacings"] = spacings
    _atomic(target, lambda tmp: nrrd.write(str(tmp), out, header))


def _enhance_raster(runner: _Runner, path: Path, target: Path) -> None:
    import cv2

    from medsr.io.raster import quantize_png16

    pages = read_slices(path)
    outputs = []
    for item in pages:
        mapping = fit_mapping(item.meta, item.pixels, runner.policy)
        outputs.append(quantize_png16(runner.unit(mapping.to_unit(item.pixels))))
    tiff = target.suffix.lower() in (".tif", ".tiff")

    def write(tmp: Path) -> None:
        ok = cv2.imwritemulti(str(tmp), outputs) if tiff and len(outputs) > 1 else cv2.imwrite(str(tmp), outputs[0])
        if not ok:
            raise OSError(f"cannot write {target}")

    _atomic(target, write)


def enhance_paths(
    inputs: Sequence[str | Path],
    out: str | Path,
    model: SRModel,
    options: EnhanceOptions = EnhanceOptions(),
    *,
    progress: bool = False,
) -> EnhanceReport:
    """Super-resolve every image under ``inputs`` into ``out`` (see the module docstring).

    Raises:
        MedsrError: a missing input, or ``out`` equal to (or holding) an input.
    """
    from tqdm import tqdm

    inputs = [Path(p) for p in inputs]
    out = Path(out)
    for path in inputs:
        if not path.exists():
            raise MedsrError(f"{path}: no such file or folder")
        if path.resolve() == out.resolve() or is_within(path, out):
            raise MedsrError(f"{out}: the output may not be an input or contain one ({path}); choose another -o")
    files = [f for f in iter_image_files(inputs) if not is_within(f, out)]
    targets = _output_paths(files, inputs, out)
    report = EnhanceReport()
    bar = tqdm(desc="enhance", unit="tile", disable=not progress, leave=False)
    runner = _Runner(model, options, bar.update)
    series: dict[str, list[Path]] = defaultdict(list)
    others: list[tuple[Path, str]] = []
    for path in files:
        try:
            kind = detect_format(path)
            if kind in ("dicom", "dicom-nopreamble"):
                from medsr.io.dicom import read_dicom_header

                header = read_dicom_header(path, force=kind == "dicom-nopreamble")
                series[str(header.get("SeriesInstanceUID", "") or path)].append(path)
            elif kind is None:
                raise UnreadableImage("not a recognised image format (DICOM, NIfTI, NRRD, PNG or TIFF)")
            else:
                others.append((path, kind))
        except UnreadableImage as exc:
            report.failed.append((str(path), str(exc)))
    jobs: list[tuple[str, Callable[[], None]]] = []
    for paths in series.values():
        jobs.append((str(paths[0].parent if len(paths) > 1 else paths[0]), lambda p=paths: _enhance_dicom_series(runner, p, targets, report)))
    writers = {"nifti": _enhance_nifti, "nrrd": _enhance_nrrd, "raster": _enhance_raster}
    for path, kind in others:
        def job(p=path, k=kind):
            writers[k](runner, p, targets[p])
            report.written.append(targets[p])
        jobs.append((str(path), job))
    for source, job in jobs:
        try:
            job()
        except (UnreadableImage, MedsrError, OSError, ValueError) as exc:
            report.failed.append((source, str(exc) or type(exc).__name__))
            log.info("enhance failed for %s", source, exc_info=True)
    bar.close()
    return report
