"""Slicing 3-D/4-D volumes (NIfTI, NRRD) into 2-D slices in a canonical orientation."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from medsr.choices import SLICE_AXES
from medsr.errors import UnreadableImage
from medsr.io.sidecar import read_sidecar
from medsr.io.types import Slice, SliceMeta

#: Slice orientations, named after the RAS axis they are normal to.
AXES = {name: index for index, name in enumerate(SLICE_AXES)}  # the RAS axis each is normal to


def parse_axes(axes: str | Iterable[str]) -> tuple[str, ...]:
    """``"axial"``, ``"all"`` or ``"axial,coronal"`` -> tuple of orientation names."""
    names = [a.strip() for a in (axes.split(",") if isinstance(axes, str) else axes) if a.strip()]
    if names == ["all"]:
        return tuple(AXES)
    unknown = [n for n in names if n not in AXES]
    if unknown or not names:
        raise ValueError(f"unknown slice axis {unknown or axes!r}; choose from {', '.join(AXES)} or all")
    return tuple(names)


def _plane(volumes: np.ndarray, axis: int, index: int, t: int) -> np.ndarray:
    """A view of plane ``index`` along ``axis`` of volume ``t`` of an (X, Y, Z, T) array."""
    if axis == 0:
        return volumes[index, :, :, t]
    if axis == 1:
        return volumes[:, index, :, t]
    return volumes[:, :, index, t]


def volume_to_slices(
    data: np.ndarray,
    affine: np.ndarray,
    path: Path,
    *,
    axes: Iterable[str],
    unit: str,
    stored_dtype: str,
    rescale: tuple[float, float] = (1.0, 0.0),
    default_modality: str = "OT",
    file_format: str = "",
) -> list[Slice]:
    """Cut a volume into 2-D slices.

    Args:
        data: (X, Y, Z) or (X, Y, Z, T) array in physical units; a 2-D array is one slice.
        affine: 4x4 voxel-to-RAS+ matrix; the volume is reoriented to RAS before slicing, and
            each slice is rotated by 90 degrees so that anterior/superior is at the top.
        path: source file (metadata comes from its JSON sidecar, if any).
        axes: orientations to cut along (``sagittal``, ``coronal``, ``axial``).

    Returns:
        float32 slices; ``meta.frame`` numbers slices across orientations and volumes, and
        ``meta.extra`` records ``axis``, ``index`` and ``volume`` so a slice can be put back.
    """
    sidecar = read_sidecar(path)
    modality = sidecar.get("Modality", default_modality)
    meta_common = dict(
        source=str(path),
        format=file_format,
        modality=modality,
        patient_id=sidecar.get("PatientID", ""),  # else prepare's --patient-id rule decides
        series_uid=sidecar.get("SeriesInstanceUID", ""),
        series_description=sidecar.get("SeriesDescription", ""),
        rescale_slope=rescale[0],
        rescale_intercept=rescale[1],
        unit="HU" if modality == "CT" and unit == "stored" else unit,
        stored_dtype=stored_dtype,
    )
    if data.ndim == 2:
        return [Slice(np.ascontiguousarray(np.rot90(data)).astype(np.float32), SliceMeta(**meta_common))]
    if data.ndim not in (3, 4):
        raise UnreadableImage(f"expected a 2-D, 3-D or 4-D volume, got {data.ndim} dimensions")
    return _cut(data, affine, axes, meta_common)


def _cut(data: np.ndarray, affine: np.ndarray, axes: Iterable[str], meta_common: dict) -> list[Slice]:
    """Slices of a 3-D/4-D ``data`` reoriented to RAS by ``affine`` (see ``volume_to_slices``)."""
    from nibabel import orientations

    ornt = orientations.io_orientation(affine)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    data = orientations.apply_orientation(data, ornt)
    zooms = zooms[ornt[:, 0].astype(int).argsort()]
    volumes = data[..., np.newaxis] if data.ndim == 3 else data
    slices: list[Slice] = []
    frame = 0
    for t in range(volumes.shape[3]):
        for name in axes:
            axis = AXES[name]
            in_plane = [a for a in range(3) if a != axis]
            spacing = (float(zooms[in_plane[1]]), float(zooms[in_plane[0]]))  # after rot90: rows = 2nd axis
            for index in range(volumes.shape[axis]):
                plane = _plane(volumes, axis, index, t)
                pixels = np.ascontiguousarray(np.rot90(plane), dtype=np.float32)
                meta = SliceMeta(
                    frame=frame,
                    pixel_spacing=spacing,
                    position=float(index * zooms[axis]),
                    extra={"axis": name, "index": str(index), "volume": str(t)},
                    **meta_common,
                )
                slices.append(Slice(pixels, meta))
                frame += 1
    return slices


def check_finite(data: np.ndarray) -> None:
    """Raise ``UnreadableImage`` naming how many values are NaN or infinite, if any."""
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise UnreadableImage(f"{bad} of {np.size(data)} values are not finite (NaN or infinite)")


def fine_count(count: int, scale: float) -> int:
    """The whole voxels of a grid ``scale`` times finer than ``count`` voxels over the same extent."""
    return math.floor(count * scale + 1e-6)


def finer_shape(shape: tuple[int, ...], scales: Sequence[float]) -> tuple[int, ...]:
    """``shape`` with axis ``a`` made ``scales[a]`` times finer (``fine_count``); axes beyond
    ``scales`` unchanged."""
    return tuple(fine_count(n, scales[a]) if a < len(scales) else n for a, n in enumerate(shape))


def in_plane_scales(scale: int) -> tuple[int, int]:
    """The per-axis scales of in-plane super-resolution: the first two voxel axes, ``scale`` each."""
    return (scale, scale)


def check_scaled_shape(
    source_shape: tuple[int, ...], result_shape: tuple[int, ...], scales: Sequence[float]
) -> None:
    """Raise ``ValueError`` unless ``result_shape`` is ``finer_shape(source_shape, scales)``, or its
    first three axes for a 3-D result (one volume of a 4-D source)."""
    expected = finer_shape(tuple(source_shape), scales)
    if len(result_shape) == 3 < len(expected):
        expected = expected[:3]
    if tuple(result_shape) != expected:
        axes = " x ".join(f"{s:g}" for s in scales)
        raise ValueError(
            f"expected a volume of shape {expected} (source x {axes}), got {tuple(result_shape)}"
        )
