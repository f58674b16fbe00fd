"""Thick-slice volumes from files, with their geometry, and the reconstruction written back so that
it overlays the source in a viewer.

- NIfTI and NRRD: the volume in its own voxel order; spacing from the header (NIfTI zooms, NRRD
  space directions or spacings); the slice axis is the voxel axis with the largest spacing. A 4-D
  file needs ``volume`` (which 3-D volume). Written with the source's header and data type, the
  affine (space directions, origin) changed along the slice axis only.
- DICOM: one series (single-frame files), stacked along the slice normal (the cross product of
  Image Orientation (Patient)); spacing from the positions, thickness from Slice Thickness. Refused
  with the reason: mixed orientations, positions off the normal (a tilted, oblique stack), uneven
  gaps (the slices named). A series with several images per position (4-D) needs ``volume``.
  Written as a new derived series, one file per output slice, each with its Image Position.

Output slices: ``factor`` per source slice (a whole number or not) over the same field of view
(``medsr.isotropic``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medsr.errors import UnreadableImage

POSITION_TOLERANCE = 0.01  # of the slice spacing: how far positions may stray from an even grid


@dataclass
class ThickVolume:
    data: np.ndarray  # 3-D physical values (NIfTI/NRRD: voxel order; DICOM: (slices, rows, columns))
    spacing: tuple[float, float, float]  # mm per axis of ``data``
    slice_axis: int
    thickness: float | None  # Slice Thickness (DICOM), when the header has it
    kind: str  # nifti, nrrd or dicom
    sources: list[Path]  # the file, or the series' files in slice order
    volume: int | None = None  # which volume of a 4-D source
    geometry: dict = field(default_factory=dict)  # DICOM: origin, normal, row and column directions


def read_thick_volume(kind: str, paths: list[Path], volume: int | None = None) -> ThickVolume:
    """The volume and geometry of a NIfTI/NRRD file or a DICOM series (see the module docstring).

    Raises:
        UnreadableImage: unreadable, 2-D, 4-D without ``volume`` (or ``volume`` out of range), or
            (DICOM) not one evenly spaced stack along its normal; the message says which.
    """
    if kind == "nifti":
        return _read_nifti(paths[0], volume)
    if kind == "nrrd":
        return _read_nrrd(paths[0], volume)
    if kind in ("dicom", "dicom-nopreamble"):
        return _read_dicom_series(paths, volume)
    raise UnreadableImage(f"through-plane super-resolution reads NIfTI, NRRD or DICOM series, not {kind}")


def _pick_volume(data: np.ndarray, volume: int | None) -> np.ndarray:
    """The 3-D volume of ``data`` (3-D, or 4-D with ``volume`` chosen)."""
    squeezed = (
        data.reshape([n for i, n in enumerate(data.shape) if n > 1 or i < 3][:4]) if data.ndim > 3 else data
    )
    if squeezed.ndim == 3 and min(squeezed.shape) > 1:
        if volume not in (None, 0):
            raise UnreadableImage(f"--volume {volume}: this is a single 3-D volume")
        return squeezed
    if squeezed.ndim < 3 or min(squeezed.shape[:3]) < 2:
        raise UnreadableImage(f"a 2-D image (shape {data.shape}) has no slice axis to super-resolve")
    count = squeezed.shape[3]
    if volume is None:
        raise UnreadableImage(f"a 4-D series of {count} volumes: pick one with --volume N (0 to {count - 1})")
    if not 0 <= volume < count:
        raise UnreadableImage(f"--volume {volume}: the series has volumes 0 to {count - 1}")
    return squeezed[..., volume]


def _grid(affine: np.ndarray) -> tuple[tuple[float, float, float], int]:
    """(voxel spacing, slice axis) of a voxel-to-world affine: the columns' lengths, and the axis
    with the largest.

    Raises:
        UnreadableImage: pixels that are not square, or a slice axis not perpendicular to the
            slices (a tilted, sheared stack).
    """
    columns = np.asarray(affine, float)[:3, :3]
    spacing = np.linalg.norm(columns, axis=0)
    if not np.all(spacing > 0):
        raise UnreadableImage(f"a voxel spacing is zero ({', '.join(f'{s:g}' for s in spacing)} mm)")
    axis = int(np.argmax(spacing))
    plane = [a for a in range(3) if a != axis]
    if abs(spacing[plane[0]] / spacing[plane[1]] - 1) > 0.1:
        raise UnreadableImage(
            f"pixels that are not square ({spacing[plane[0]]:g} x {spacing[plane[1]]:g} mm): resample in plane first"
        )
    unit = columns / spacing
    if max(abs(unit[:, axis] @ unit[:, a]) for a in plane) > 0.01:
        raise UnreadableImage("an oblique (tilted) stack: the slice axis is not perpendicular to the slices")
    return (float(spacing[0]), float(spacing[1]), float(spacing[2])), axis


def _read_nifti(path: Path, volume: int | None) -> ThickVolume:
    import nibabel as nib

    from medsr.io.nifti import read_nifti_volume

    data = read_nifti_volume(path).data
    picked = _pick_volume(data, volume)
    spacing, axis = _grid(nib.load(str(path)).affine)  # the affine viewers place it by, not pixdim
    return ThickVolume(picked, spacing, axis, None, "nifti", [path], volume)


def _read_nrrd(path: Path, volume: int | None) -> ThickVolume:
    from medsr.io.nrrd import nrrd_affine, read_nrrd_raw
    from medsr.io.volume import check_finite

    data, header = read_nrrd_raw(path)
    if data.ndim != 3:
        raise UnreadableImage(
            f"a {data.ndim}-D NRRD: through-plane super-resolution reads 3-D NRRD (convert 4-D series to NIfTI)"
        )
    check_finite(data)
    spacing, axis = _grid(nrrd_affine(header, 3))
    return ThickVolume(np.asarray(data, np.float32), spacing, axis, None, "nrrd", [path], volume)


def _read_dicom_series(paths: list[Path], volume: int | None) -> ThickVolume:
    """One series of single-frame DICOM files as (slices, rows, columns), sorted along the normal."""
    from medsr.io import read_slices
    from medsr.io.dicom import read_dicom_header

    headers = [read_dicom_header(p, force=True) for p in paths]
    orientations = {
        tuple(round(float(v), 4) for v in h.get("ImageOrientationPatient") or ()) for h in headers
    }
    if len(orientations) != 1 or len(next(iter(orientations))) != 6:
        raise UnreadableImage(
            "the series' slices have different orientations"
            if len(orientations) > 1
            else "the series has no Image Orientation (Patient): its slices cannot be stacked"
        )
    if any(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in headers):
        raise UnreadableImage("multi-frame DICOM is not supported for through-plane super-resolution")
    orientation = np.array(next(iter(orientations)), float)
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    for path, header in zip(paths, headers):
        if len(header.get("ImagePositionPatient") or ()) != 3:
            raise UnreadableImage(f"{path.name} has no Image Position (Patient): the slices cannot be placed")
    positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
    along = positions @ normal
    order = sorted(range(len(paths)), key=lambda i: (along[i], int(headers[i].get("InstanceNumber", 0) or 0)))
    order = _one_volume(order, along, volume)
    if len(order) < 2:
        raise UnreadableImage("a single slice has no slice axis to super-resolve")
    steps = np.diff(along[order])
    spacing = float(np.median(steps))
    uneven = np.flatnonzero(np.abs(steps - spacing) > POSITION_TOLERANCE * spacing + 1e-3)
    if uneven.size:
        i = int(uneven[0])
        raise UnreadableImage(
            f"non-uniform slice positions: {steps[i]:.3g} mm between slices {i + 1} and {i + 2} "
            f"({paths[order[i]].name}, {paths[order[i + 1]].name}), {spacing:.3g} mm elsewhere"
        )
    drift = positions[order] - positions[order[0]] - np.outer(along[order] - along[order[0]], normal)
    if np.abs(drift).max() > POSITION_TOLERANCE * spacing + 1e-3:
        raise UnreadableImage(
            "an oblique (tilted) stack: the slice positions do not follow the slice normal; resample it first"
        )
    first = headers[order[0]]
    pixel = first.get("PixelSpacing") or first.get("ImagerPixelSpacing")
    if not pixel or len(pixel) < 2:
        raise UnreadableImage("the series has no Pixel Spacing: the through-plane factor cannot be known")
    rows, columns = (float(v) for v in pixel[:2])
    if not (rows > 0 and columns > 0) or abs(rows / columns - 1) > 0.1:
        raise UnreadableImage(
            f"pixels that are not square ({rows:g} x {columns:g} mm): resample in plane first"
        )
    sizes = [(int(headers[i].get("Rows", 0) or 0), int(headers[i].get("Columns", 0) or 0)) for i in order]
    odd = next((k for k, size in enumerate(sizes) if size != sizes[0]), None)
    if odd is not None:
        raise UnreadableImage(
            f"{paths[order[odd]].name} is {sizes[odd][0]}x{sizes[odd][1]} pixels, "
            f"{paths[order[0]].name} {sizes[0][0]}x{sizes[0][1]}: not one stack"
        )
    data = np.stack([read_slices(paths[i])[0].pixels for i in order]).astype(np.float32)
    thickness = float(first.SliceThickness) if first.get("SliceThickness") not in (None, "") else None
    geometry = {"origin": positions[order[0]], "normal": normal, "spacing": spacing}
    return ThickVolume(
        data, (spacing, rows, columns), 0, thickness, "dicom", [paths[i] for i in order], volume, geometry
    )


def _one_volume(order: list[int], along: np.ndarray, volume: int | None) -> list[int]:
    """``order`` (sorted by position) reduced to one image per position: a 4-D series has the same
    number of images at every position, and ``volume`` picks the N-th of each (by Instance Number)."""
    groups: list[list[int]] = []
    for index in order:
        if groups and abs(along[index] - along[groups[-1][0]]) < 1e-3:
            groups[-1].append(index)
        else:
            groups.append([index])
    counts = {len(g) for g in groups}
    if counts == {1}:
        if volume not in (None, 0):
            raise UnreadableImage(f"--volume {volume}: this series has one volume")
        return order
    if len(counts) > 1:
        raise UnreadableImage(
            "some slice positions hold more images than others: not one volume, nor a 4-D series"
        )
    count = counts.pop()
    if volume is None:
        raise UnreadableImage(f"a 4-D series of {count} volumes: pick one with --volume N (0 to {count - 1})")
    if not 0 <= volume < count:
        raise UnreadableImage(f"--volume {volume}: the series has volumes 0 to {count - 1}")
    return [g[volume] for g in groups]


def write_through_plane(
    thick: ThickVolume, volume: np.ndarray, factor: float, target: Path, model: str
) -> list[Path]:
    """Write the reconstruction ``volume`` (``thick.data``'s axes, ``fine_count(n, factor)`` samples
    along the slice axis, physical values) in the source's format; atomically per file.

    Returns:
        The files written (one for NIfTI/NRRD; one per slice, in the folder ``target``, for DICOM).
    """
    from medsr.io.nifti import write_nifti_like
    from medsr.io.nrrd import write_nrrd_like
    from medsr.io.volume import check_scaled_shape

    scales = [1.0, 1.0, 1.0]
    scales[thick.slice_axis] = factor
    check_scaled_shape(thick.data.shape, volume.shape, scales)
    if thick.kind == "nifti":
        write_nifti_like(thick.sources[0], volume, target, scales=scales)
        return [target]
    if thick.kind == "nrrd":
        write_nrrd_like(thick.sources[0], volume, target, scales=scales)
        return [target]
    return _write_dicom(thick, volume, factor, target, model)


def _write_dicom(
    thick: ThickVolume, volume: np.ndarray, factor: float, folder: Path, model: str
) -> list[Path]:
    """One derived file per output slice: the header of the source slice it lies in, its own
    position, Slice Location, Instance Number, spacing and thickness (the new spacing)."""
    from pydicom.uid import generate_uid

    from medsr import __version__
    from medsr.io.dicom import read_dicom_header
    from medsr.io.dicom_write import derived_dataset, stored_values, write_dataset

    series_uid = generate_uid()
    measured = thick.geometry["spacing"]  # where the slices are (not a --slice-spacing override)
    spacing = measured / factor
    origin, normal = thick.geometry["origin"], thick.geometry["normal"]
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(volume.shape[0]):
        source = min(len(thick.sources) - 1, int((index + 0.5) // factor))  # the slice it lies in
        header = read_dicom_header(thick.sources[source], force=True)
        frames = stored_values(volume[index], header)[None]
        ds = derived_dataset(header, frames, scale=1, series_uid=series_uid, model_name=model)
        offset = (index + 0.5) / factor - 0.5  # in source slice spacings from source slice 0
        ds.ImagePositionPatient = [f"{v:.6f}" for v in origin + offset * measured * normal]
        if "SliceLocation" in ds:  # its sign and origin vary between vendors: the position says where
            del ds.SliceLocation
        ds.InstanceNumber = index + 1
        ds.SpacingBetweenSlices = f"{spacing:.6g}"
        ds.SliceThickness = f"{spacing:.6g}"
        ds.DerivationDescription = (
            f"Through-plane super-resolved, {factor:g} slices per slice, by medsr {__version__}, model {model}"
        )[:1024]
        ds.SeriesDescription = f"{header.get('SeriesDescription', '')} SR through-plane x{factor:g}".strip()[
            :64
        ]
        path = folder / f"slice-{index + 1:04d}.dcm"
        write_dataset(ds, path)
        written.append(path)
    return written
