"""NRRD reader (pynrrd), 2-D and 3-D, with the patient-space affine from the header."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import nrrd
import numpy as np

from medsr.errors import UnreadableImage
from medsr.io.types import Slice
from medsr.io.volume import volume_to_slices

_LPS_SPACES = {"left-posterior-superior", "LPS"}
_RAS_SPACES = {"right-anterior-superior", "RAS"}


def _affine(header: dict, ndim: int) -> np.ndarray:
    """4x4 voxel-to-RAS+ affine from ``space directions``/``space origin`` (identity if absent)."""
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is None:
        spacings = header.get("spacings")
        if spacings is not None:
            affine[:ndim, :ndim] = np.diag(np.asarray(spacings, float)[:3])
        return affine
    rows = [np.asarray(d, float) for d in directions if d is not None and not np.all(np.isnan(np.asarray(d, float)))]
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
    try:
        data, header = nrrd.read(str(path))
    except Exception as exc:
        raise UnreadableImage(f"cannot read NRRD ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})") from None
    if data.ndim == 4 and data.shape[0] in (3, 4) and header.get("kinds", [""])[0] in ("RGB-color", "RGBA-color", "vector", "3-color"):
        raise UnreadableImage(f"colour image (NRRD kind {header['kinds'][0]})")
    stored_dtype = str(data.dtype)
    if data.ndim == 2:
        affine = np.eye(4)
    elif data.ndim == 3:
        affine = _affine(header, 3)
    else:
        raise UnreadableImage(f"expected a 2-D or 3-D NRRD, got {data.ndim} dimensions")
    return volume_to_slices(
        data.astype(np.float32, copy=False), affine, path, axes=axes, unit="stored", stored_dtype=stored_dtype, file_format="nrrd"
    )
