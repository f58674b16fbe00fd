"""``medsr enhance --through-plane``: every volume under the inputs, each written in its format.

NIfTI and NRRD files become files of the same name under OUT (as ``medsr enhance`` names them);
a DICOM series becomes the folder ``series-<Series Instance UID>`` beside where its files would go,
filled in a hidden folder first and renamed when complete, so that no partial series is left. A
volume that fails (or has nothing to do) is reported with the reason and the others go on; inputs
are never modified. A rerun into the same OUT folder skips the volumes an earlier run finished with
the same settings from the same inputs (``enhance_state``'s markers), so an interrupted run goes on
where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from medsr.errors import MedsrError, UnreadableImage
from medsr.isotropic import NothingToDo, ThroughPlaneOptions

log = logging.getLogger(__name__)
_SUFFIXES = {"nifti": (".nii", ".nii.gz"), "nrrd": (".nrrd",)}  # what each format is written as


@dataclasses.dataclass(frozen=True)
class _Settings:
    options: ThroughPlaneOptions
    volume: int | None
    slice_spacing: float | None
    progress: bool

    def identity(self) -> dict[str, str]:
        """What a finished volume's marker records: every setting that changes the result."""
        from medsr import __version__

        settings = {
            **dataclasses.asdict(self.options),
            "volume": self.volume,
            "slice_spacing": self.slice_spacing,
        }
        return {"through_plane": json.dumps(settings, sort_keys=True), "medsr": __version__}


def enhance_through_plane(
    inputs: Sequence[str | Path],
    out: str | Path,
    options: ThroughPlaneOptions,
    *,
    volume: int | None = None,
    slice_spacing: float | None = None,
    progress: bool = False,
):
    """Through-plane super-resolution of every NIfTI, NRRD and DICOM series under ``inputs``.

    Args:
        options: its ``thickness`` defaults to the DICOM Slice Thickness, else the slice spacing.
        volume: which volume of 4-D inputs.
        slice_spacing: overrides the slice spacing the header gives (mm).

    Returns:
        An ``EnhanceReport``: files written, inputs failed (with the reason), volumes finished by an
        earlier run (``skipped``), volumes with nothing to do (``notices``, with the reason).

    Raises:
        MedsrError: a missing input, or an output that is or holds an input.
    """
    from medsr.enhance import EnhanceReport, check_inputs, output_paths, plan_jobs, require_images
    from medsr.enhance_state import STATE_DIR, forget, is_done, mark_done
    from medsr.fsutil import is_within
    from medsr.io import iter_image_files

    inputs = [Path(p) for p in inputs]
    out = Path(out)
    check_inputs(inputs, out)
    plan = plan_jobs([f for f in iter_image_files(inputs) if not is_within(f, out)])
    require_images(plan, inputs)
    targets = output_paths([p for _, paths in plan.jobs for p in paths], inputs, out)
    state = None if set(targets.values()) == {out} else out / STATE_DIR  # a folder of outputs
    settings = _Settings(options, volume, slice_spacing, progress)
    report = EnhanceReport(failed=list(plan.unreadable))
    for kind, paths in plan.jobs:
        name = str(paths[0].parent if len(paths) > 1 else paths[0])
        try:
            outputs = [_target(kind, paths, targets)]
            if is_done(state, paths, outputs, settings.identity()):
                report.skipped.append(name)
                continue
            forget(state, outputs)
            report.written += _one(kind, paths, outputs[0], settings)
            mark_done(state, paths, outputs, settings.identity())
        except NothingToDo as exc:
            report.notices.append(f"{name}: {exc}")
        except (UnreadableImage, MedsrError, OSError, ValueError) as exc:
            report.failed.append((name, str(exc) or type(exc).__name__))
            log.info("through-plane failed for %s", name, exc_info=True)
        except Exception as exc:  # a reader's surprise must not stop the other volumes
            reason = str(exc).splitlines()[0][:160] if str(exc) else ""
            report.failed.append((name, f"{type(exc).__name__}: {reason}"))
            log.info("through-plane failed for %s", name, exc_info=True)
    return report


def _target(kind: str, paths: list[Path], targets: dict[Path, Path]) -> Path:
    """The output file (NIfTI, NRRD) or series folder (DICOM) of one job."""
    if kind == "raster":
        raise UnreadableImage("a 2-D image has no slice axis to super-resolve (through-plane needs a volume)")
    if kind != "dicom":
        target = targets[paths[0]]
        if not target.name.lower().endswith(_SUFFIXES[kind]):
            raise MedsrError(
                f"{target}: a {kind} volume is written as {kind} ({' or '.join(_SUFFIXES[kind])})"
            )
        return target
    from medsr.io.dicom import read_dicom_header

    folder = targets[paths[0]].parent
    if folder.name.lower().endswith((".dcm", *(s for suffixes in _SUFFIXES.values() for s in suffixes))):
        raise MedsrError(f"{folder}: a DICOM series is written as a series folder; give -o a folder")
    uid = str(read_dicom_header(paths[0], force=True).get("SeriesInstanceUID", "") or "unknown")
    return folder / f"series-{uid}"


def _one(kind: str, paths: list[Path], target: Path, settings: _Settings) -> list[Path]:
    """Read, reconstruct and write one volume; the files written."""
    from medsr.isotropic import through_plane
    from medsr.isotropic.volumes import read_thick_volume, write_through_plane

    thick = read_thick_volume(kind, paths, settings.volume)
    spacing = list(thick.spacing)
    if settings.slice_spacing is not None:
        spacing[thick.slice_axis] = settings.slice_spacing
    thick.spacing = tuple(spacing)
    options = dataclasses.replace(settings.options, thickness=settings.options.thickness or thick.thickness)
    result = through_plane(
        thick.data,
        thick.spacing,
        slice_axis=thick.slice_axis,
        options=options,
        progress=settings.progress,
        label=paths[0].parent.name if kind == "dicom" else paths[0].name,
    )
    if kind != "dicom":
        return write_through_plane(thick, result.volume, result.factor, target, result.started_from)
    partial = target.parent / f".partial-{target.name}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        written = write_through_plane(thick, result.volume, result.factor, partial, result.started_from)
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return [target / p.name for p in written]
