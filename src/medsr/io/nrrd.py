"""NRRD reader (pynrrd), 2-D and 3-D, with the patient-space affine from the header, and the
writer of super-resolved volumes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import nrrd
import numpy as np

from medsr.errors import UnreadableImage
from medsr.fsutil import atomic_path
from medsr.io.sidecar import read_sidecar
from medsr.io.types import Slice, SliceMeta, Volume
from medsr.io.volume import check_finite, check_scaled_shape, volume_to_slices

_LPS_SPACES = {"left-posterior-superior", "LPS"}
_RAS_SPACES = {"right-anterior-superior", "RAS"}


def nrrd_affine(header: dict, ndim: int) -> np.ndarray:
    """4x4 voxel-to-RAS+ affine from ``space directions``/``space origin`` (identity if absent)."""
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is None:
        spacings = header.get("spacings")
        if spacings is not None:
            affine[:ndim, :ndim] = np.diag(np.asarray(spacings, float)[:3])
        return affine
    rows = [
        np.asarray(d, float)
        for d in directions
        if d is not None and not np.all(np.isnan(np.asarray(d, float)))
    ]
    if len(rows) < 3:
        return affine
    affine[:3, :3] = np.stack(rows[:3], axis=1)
    origin = header.get("space origin")
    if origin is not None:
        affine[:3, 3] = np.asarray(origin, float)
    if header.get("space") in _LPS_SPACES:
        affine[:2] *= -1  # LPS -> RAS
    return affine


def read_nrrd(path: str | Path, *, axes: Iterable[str] = ("axial",)) -> list[Slice]:
    """Read an NRRD file into float32 slices along ``axes`` (see ``volume_to_slices``).

    CT volumes stored as int16 HU keep HU; the modality comes from a JSON sidecar if present.
    """
    path = Path(path)
    data, header = read_nrrd_raw(path)
    if (
        data.ndim == 4
        and data.shape[0] in (3, 4)
        and header.get("kinds", [""])[0] in ("RGB-color", "RGBA-color", "vector", "3-color")
    ):
        raise UnreadableImage(f"colour image (NRRD kind {header['kinds'][0]})")
    stored_dtype = str(data.dtype)
    if data.ndim == 2:
        affine = np.eye(4)
    elif data.ndim == 3:
        affine = nrrd_affine(header, 3)
    else:
        raise UnreadableImage(f"expected a 2-D or 3-D NRRD, got {data.ndim} dimensions")
    return volume_to_slices(
        data.astype(np.float32, copy=False),
        affine,
        path,
        axes=axes,
        unit="stored",
        stored_dtype=stored_dtype,
        file_format="nrrd",
    )


#: NRRD type names (every spelling the format allows) -> numpy type codes.
_NRRD_TYPES = {
    "i1": ("signed char", "int8", "int8_t"),
    "u1": ("uchar", "unsigned char", "uint8", "uint8_t"),
    "i2": ("short", "short int", "signed short", "signed short int", "int16", "int16_t"),
    "u2": ("ushort", "unsigned short", "unsigned short int", "uint16", "uint16_t"),
    "i4": ("int", "signed int", "int32", "int32_t"),
    "u4": ("uint", "unsigned int", "uint32", "uint32_t"),
    "i8": (
        "longlong",
        "long long",
        "long long int",
        "signed long long",
        "signed long long int",
        "int64",
        "int64_t",
    ),
    "u8": ("ulonglong", "unsigned long long", "unsigned long long int", "uint64", "uint64_t"),
    "f4": ("float",),
    "f8": ("double",),
}
NRRD_DTYPE = {name: np.dtype(code) for code, names in _NRRD_TYPES.items() for name in names}


def read_nrrd_raw(path: Path) -> tuple[np.ndarray, dict]:
    try:
        return nrrd.read(str(path))
    except Exception as exc:
        raise UnreadableImage(
            f"cannot read NRRD ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        ) from None


def read_nrrd_volume(path: str | Path) -> Volume:
    """Read a 2-D or 3-D NRRD file in its own voxel order (see ``Volume``).

    Raises:
        UnreadableImage: unreadable, not 2-D or 3-D, or not finite.
    """
    path = Path(path)
    data, _ = read_nrrd_raw(path)
    if data.ndim not in (2, 3):
        raise UnreadableImage(f"expected a 2-D or 3-D NRRD, got {data.ndim} dimensions")
    check_finite(data)
    meta = SliceMeta(
        source=str(path),
        format="nrrd",
        modality=read_sidecar(path).get("Modality", "OT"),
        stored_dtype=str(data.dtype),
    )
    return Volume(data.astype(np.float32), meta)


def _scaled_header(header: dict, scales: Sequence[float]) -> dict:
    """The source header for a grid ``scales[a]`` times finer along axis ``a``, covering the same
    field of view (``space directions``/``space origin``, or ``spacings``; as ``nifti.finer_affine``)."""
    header = {
        k: v
        for k, v in header.items()
        if k not in ("sizes", "data file", "datafile", "line skip", "byte skip")
    }
    directions = header.get("space directions")
    if directions is not None:
        directions = np.array(directions, dtype=float)
        origin = np.asarray(header.get("space origin", np.zeros(directions.shape[1])), float)
        for axis, scale in enumerate(scales):
            if scale == 1 or not np.all(np.isfinite(directions[axis])):  # unchanged, or not spatial
                continue
            origin = origin + (1.0 / scale - 1.0) / 2.0 * directions[axis]  # an absent origin is 0
            directions[axis] = directions[axis] / scale
        header["space directions"], header["space origin"] = directions, origin
    elif header.get("spacings") is not None:
        spacings = list(header["spacings"])
        for axis, scale in enumerate(scales):
            spacings[axis] = spacings[axis] / scale
        header["spacings"] = spacings
    if header.get("thicknesses") is not None:  # the acquired thickness does not describe finer voxels
        thicknesses = list(header["thicknesses"])
        for axis, scale in enumerate(scales):
            if scale != 1:
                thicknesses[axis] = float("nan")
        header["thicknesses"] = thicknesses
    return header


def write_nrrd_like(
    source: str | Path, volume: np.ndarray, target: str | Path, *, scales: Sequence[float]
) -> None:
    """Write ``volume`` of physical values, super-resolved from the NRRD ``source`` in its voxel
    order (``scales[a]`` times finer along axis ``a``: ``finer_shape``), as an NRRD (header and data
    in one file) that overlays it: the source's header and data type (integers rounded and clipped
    to the type), the finer grid's space directions and origin. Written atomically.

    Raises:
        UnreadableImage: the source header cannot be read or names an unknown type.
        ValueError: ``volume``'s shape is not the source's made finer by ``scales``.
    """
    try:
        header = nrrd.read_header(str(source))
    except Exception as exc:
        raise UnreadableImage(f"cannot read NRRD header ({type(exc).__name__})") from None
    dtype = NRRD_DTYPE.get(str(header.get("type", "")))
    if dtype is None:
        raise UnreadableImage(f"unsupported NRRD type {header.get('type')!r}")
    check_scaled_shape(tuple(int(n) for n in header["sizes"]), volume.shape, scales)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        volume = np.clip(np.rint(volume), info.min, info.max)
    stored = volume.astype(dtype)
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        nrrd.write(handle, stored, _scaled_header(header, scales))
