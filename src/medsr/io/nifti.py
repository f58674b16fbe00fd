"""NIfTI-1/2 reader (nibabel), 3-D and 4-D, and the writer of super-resolved volumes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from medsr.errors import UnreadableImage
from medsr.fsutil import atomic_path
from medsr.io.sidecar import read_sidecar
from medsr.io.types import Slice, SliceMeta, Volume
from medsr.io.volume import check_finite, check_scaled_shape, volume_to_slices


def _load(path: Path) -> tuple[nib.spatialimages.SpatialImage, np.ndarray]:
    """The nibabel image and its header-scaled voxel values, float32 in file order."""
    try:
        image = nib.load(str(path))
        return image, np.asarray(image.dataobj, dtype=np.float32)
    except Exception as exc:
        raise UnreadableImage(
            f"cannot read NIfTI ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        ) from None


def read_nifti(path: str | Path, *, axes: Iterable[str] = ("axial",)) -> list[Slice]:
    """Read a NIfTI file into slices along ``axes`` (see ``volume_to_slices``).

    Values are the header-scaled ones (``scl_slope``/``scl_inter`` applied), float32.
    """
    path = Path(path)
    image, data = _load(path)
    slope, inter = image.header.get_slope_inter()
    stored_dtype = str(image.get_data_dtype())
    return volume_to_slices(
        data,
        image.affine,
        path,
        axes=axes,
        unit="stored",
        stored_dtype=stored_dtype,
        rescale=(float(slope) if slope is not None else 1.0, float(inter) if inter is not None else 0.0),
        default_modality="MR",
        file_format="nifti",
    )


def read_nifti_volume(path: str | Path) -> Volume:
    """Read a NIfTI file in its own voxel order (see ``Volume``).

    Raises:
        UnreadableImage: unreadable, not 2-D to 4-D, or not finite.
    """
    path = Path(path)
    image, data = _load(path)
    if data.ndim not in (2, 3, 4):
        raise UnreadableImage(f"expected a 2-D, 3-D or 4-D volume, got {data.ndim} dimensions")
    check_finite(data)
    meta = SliceMeta(
        source=str(path),
        format="nifti",
        modality=read_sidecar(path).get("Modality", "MR"),
        stored_dtype=str(image.get_data_dtype()),
    )
    return Volume(data, meta)


def finer_affine(affine: np.ndarray, scales: Sequence[float]) -> np.ndarray:
    """The affine of a grid ``scales[a]`` times finer along voxel axis ``a``, covering the same field
    of view (the new voxel ``m`` lies ``(m + 0.5) / scale - 0.5`` old voxels from old voxel 0)."""
    voxel = np.eye(4)
    for axis, scale in enumerate(scales):
        voxel[axis, axis] = 1.0 / scale
        voxel[axis, 3] = (1.0 / scale - 1.0) / 2.0
    return np.asarray(affine, float) @ voxel


def to_stored(values: np.ndarray, image: nib.Nifti1Image) -> tuple[np.ndarray, float, float]:
    """Physical values -> (stored array of the source ``image``'s data type, slope, intercept):
    integer types keep the source's scl_slope/scl_inter (rounded, clipped to the type); float types
    store values as they are. The scaling is the file's (a loaded image's header no longer has it)."""
    dtype = image.get_data_dtype()
    slope = getattr(image.dataobj, "slope", None)
    inter = getattr(image.dataobj, "inter", None)
    if slope is None:
        slope, inter = image.header.get_slope_inter()
    slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint((values - inter) / slope), info.min, info.max).astype(dtype), slope, inter
    return values.astype(dtype), 1.0, 0.0


def write_nifti_like(
    source: str | Path, volume: np.ndarray, target: str | Path, *, scales: Sequence[float]
) -> None:
    """Write ``volume`` of physical values, super-resolved from the NIfTI ``source`` in its voxel
    order (``scales[a]`` times finer along voxel axis ``a``: ``finer_shape``; a 3-D ``volume`` may be
    one volume of a 4-D source), as a NIfTI that overlays it: the source's header, data type,
    scaling, units and qform/sform codes, with the finer grid's affine and zooms. Written atomically.

    Raises:
        UnreadableImage: the source cannot be read.
        ValueError: ``volume``'s shape is not the source's made finer by ``scales``.
    """
    try:
        image = nib.load(str(source))
    except Exception as exc:
        raise UnreadableImage(f"cannot read NIfTI ({type(exc).__name__})") from None
    check_scaled_shape(image.shape, volume.shape, scales)
    header = image.header
    stored, slope, inter = to_stored(volume, image)
    result = nib.Nifti1Image(stored, finer_affine(image.affine, scales), header=header.copy())
    result.header.set_slope_inter(slope, inter)
    result.header.set_xyzt_units(*header.get_xyzt_units())
    zooms = np.linalg.norm(result.affine[:3, :3], axis=0)
    result.header.set_zooms((*zooms, *header.get_zooms()[3 : stored.ndim]))
    for getter, setter in ((header.get_qform, result.set_qform), (header.get_sform, result.set_sform)):
        matrix, code = getter(coded=True)  # the qform last sets pixdim: its own voxel sizes
        setter(None if matrix is None else finer_affine(matrix, scales), code=int(code))
    timing_axis = header.get_dim_info()[2]  # the axis slice timing refers to (the third if unset)
    timing_axis = 2 if timing_axis is None else timing_axis
    if timing_axis < len(scales) and scales[timing_axis] != 1:  # the acquired slices are gone
        for field in ("slice_code", "slice_start", "slice_end", "slice_duration"):
            result.header[field] = 0
    with atomic_path(target) as tmp:
        nib.save(result, str(tmp))
