"""``medsr enhance --through-plane``: every volume under the inputs, each written in its format.

NIfTI and NRRD files become files of the same name under OUT (as ``medsr enhance`` names them);
a DICOM series becomes the folder ``series-<Series Instance UID>`` beside where its files would go,
filled in a hidden folder first and renamed when complete, so that no partial series is left. A
volume that fails (or has nothing to do) is reported with the reason and the others go on; inputs
are never modified.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

from medsr.errors import MedsrError, UnreadableImage
from medsr.isotropic import NothingToDo

log = logging.getLogger(__name__)


def enhance_through_plane(
    inputs,
    out: str | Path,
    options,
    *,
    volume: int | None = None,
    slice_spacing: float | None = None,
    progress: bool = False,
):
    """Through-plane super-resolution of every NIfTI, NRRD and DICOM series under ``inputs``.

    Args:
        options: ``ThroughPlaneOptions``; its ``thickness`` defaults to the DICOM Slice Thickness,
            else the slice spacing.
        volume: which volume of 4-D inputs.
        slice_spacing: overrides the slice spacing the header gives (mm).

    Returns:
        An ``EnhanceReport``: files written, inputs failed (with the reason), volumes skipped
        because there is nothing to do (with the reason).

    Raises:
        MedsrError: a missing input, or an output that is or holds an input.
    """
    from medsr.enhance import EnhanceReport, _check_inputs, _output_paths, _plan
    from medsr.fsutil import is_within
    from medsr.io import iter_image_files

    inputs = [Path(p) for p in inputs]
    out = Path(out)
    _check_inputs(inputs, out)
    plan = _plan([f for f in iter_image_files(inputs) if not is_within(f, out)])
    targets = _output_paths([p for _, paths in plan.jobs for p in paths], inputs, out)
    report = EnhanceReport(failed=list(plan.unreadable))
    for kind, paths in plan.jobs:
        name = str(paths[0].parent if len(paths) > 1 else paths[0])
        try:
            report.written += _one(kind, paths, targets, options, volume, slice_spacing, progress)
        except NothingToDo as exc:
            report.notices.append(f"{name}: {exc}")
        except (UnreadableImage, MedsrError, OSError, ValueError) as exc:
            report.failed.append((name, str(exc) or type(exc).__name__))
            log.info("through-plane failed for %s", name, exc_info=True)
    return report


def _one(kind, paths, targets, options, volume, slice_spacing, progress) -> list[Path]:
    from medsr.isotropic import through_plane
    from medsr.isotropic.volumes import read_thick_volume, write_through_plane

    if kind == "raster":
        raise UnreadableImage("a 2-D image has no slice axis to super-resolve (through-plane needs a volume)")
    thick = read_thick_volume(kind, paths, volume)
    spacing = list(thick.spacing)
    if slice_spacing is not None:
        spacing[thick.slice_axis] = slice_spacing
    options = dataclasses.replace(options, thickness=options.thickness or thick.thickness)
    result = through_plane(
        thick.data, tuple(spacing), slice_axis=thick.slice_axis, options=options, progress=progress
    )
    thick.spacing = tuple(spacing)
    if kind != "dicom":
        return write_through_plane(
            thick, result.volume, result.factor, targets[paths[0]], result.started_from
        )
    uid = _series_uid(paths[0])
    final = targets[paths[0]].parent / f"series-{uid}"
    partial = final.parent / f".partial-series-{uid}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        written = write_through_plane(thick, result.volume, result.factor, partial, result.started_from)
        if final.exists():
            shutil.rmtree(final)
        partial.rename(final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return [final / p.name for p in written]


def _series_uid(path: Path) -> str:
    from medsr.io.dicom import read_dicom_header

    return str(read_dicom_header(path, force=True).get("SeriesInstanceUID", "") or "unknown")
