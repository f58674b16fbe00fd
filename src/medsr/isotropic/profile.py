"""Slice profiles and the thick-slice degradation: what a scanner does along the slice axis.

A thick slice is the tissue under its slice profile: a Gaussian (FWHM = the slice thickness) or a
rectangle (width = the thickness), centred on the slice. On a fine grid of voxels of unit length,
slice ``i`` of a stack with ``factor`` fine voxels per slice spacing (a whole number or not) is
centred at ``i * factor + (factor - 1) / 2`` (it covers the fine extent ``[i * factor - 1/2, (i + 1)
* factor - 1/2]``: the same field of view), and its value is the sum of the fine voxels weighted by
the profile integrated over each voxel's extent (exact for voxels, also when the thickness is below
one voxel or the centre falls between voxels). A thickness below the spacing leaves a gap between
slices; above it, slices overlap. Conversely, ``fine_count(n, factor)`` fine voxels lie under ``n``
slices, fine voxel ``j`` at ``(j + 0.5) / factor - 0.5`` slice spacings from slice 0.

The same functions make the training pairs (along an in-plane axis of the real volume) and the
simulated thick volumes of the evaluation (along the slice axis of an isotropic one).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from medsr.io.volume import fine_count

__all__ = ["PROFILES", "Profile", "fine_count", "profile_weights", "slice_count", "slices_at", "thick_slices"]

Profile = Literal["gaussian", "rect"]
PROFILES: tuple[str, ...] = ("gaussian", "rect")


def profile_weights(profile: Profile, thickness: float, offset: float = 0.0) -> tuple[int, np.ndarray]:
    """The weights of the fine voxels under one slice.

    Args:
        profile: ``gaussian`` (FWHM = ``thickness``) or ``rect`` (width = ``thickness``).
        thickness: in fine voxels, > 0.
        offset: the slice centre's position within the voxel grid, in [0, 1) (0: on a voxel centre,
            0.5: between two voxels).

    Returns:
        (first, weights): the weights (summing to 1) of the fine voxels ``first, first + 1, ...``
        relative to the voxel at or below the slice centre.
    """
    if not thickness > 0:
        raise ValueError(f"slice thickness must be positive, got {thickness}")
    if profile == "gaussian":
        sigma = thickness / (2 * math.sqrt(2 * math.log(2)))
        reach = math.ceil(5 * sigma + 1)  # beyond 5 sigma: under 1e-6 of the weight
    elif profile == "rect":
        reach = math.ceil(thickness / 2 + 1)
    else:
        raise ValueError(f"slice profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    positions = np.arange(-reach, reach + 1, dtype=np.float64) - offset  # voxel centres - slice centre
    low, high = positions - 0.5, positions + 0.5
    if profile == "gaussian":
        from scipy.special import ndtr

        weights = ndtr(high / sigma) - ndtr(low / sigma)
    else:
        weights = np.clip(np.minimum(high, thickness / 2) - np.maximum(low, -thickness / 2), 0, None)
    return -reach, weights / weights.sum()


def slice_count(fine: int, factor: float) -> int:
    """The number of whole slice spacings in ``fine`` fine voxels (a last incomplete one dropped)."""
    return math.floor(fine / factor + 1e-6)


def thick_slices(
    fine: np.ndarray, axis: int, factor: float, thickness: float, profile: Profile
) -> np.ndarray:
    """Thick slices of ``fine`` along ``axis``: one per ``factor`` fine voxels (see the module docstring).

    Args:
        fine: array (any number of dimensions) on a grid of unit voxels along ``axis``.
        factor: fine voxels per slice spacing (>= 1; a whole number or not).
        thickness: the slice thickness in fine voxels (FWHM for ``gaussian``).

    Returns:
        float32 array with ``slice_count(fine.shape[axis], factor)`` slices along ``axis``; voxels
        beyond the ends are taken as their mirror image.
    """
    if not factor >= 1:
        raise ValueError(f"factor must be at least 1, got {factor}")
    count = slice_count(np.shape(fine)[axis], factor)
    return slices_at(fine, axis, np.arange(count) * factor + (factor - 1) / 2, thickness, profile)


def slices_at(
    fine: np.ndarray, axis: int, centres: np.ndarray, thickness: float, profile: Profile
) -> np.ndarray:
    """Slices of ``fine`` along ``axis`` centred at ``centres`` (fine voxel coordinates: voxel ``j``
    at ``j``), each the profile-weighted sum of the voxels under it; mirror-image voxels beyond the ends.

    Returns:
        float32 array with ``len(centres)`` slices along ``axis``.
    """
    moved = np.moveaxis(np.asarray(fine, np.float32), axis, 0)
    weights, first = slice_matrix(moved.shape[0], centres, thickness, profile)
    if not len(weights):
        return np.moveaxis(np.zeros((0, *moved.shape[1:]), np.float32), 0, axis)
    window = moved[first : first + weights.shape[1]]
    out = np.tensordot(weights, window.reshape(window.shape[0], -1), axes=1)
    return np.moveaxis(out.reshape(len(weights), *moved.shape[1:]).astype(np.float32), 0, axis)


def slice_matrix(
    size: int, centres: np.ndarray, thickness: float, profile: Profile
) -> tuple[np.ndarray, int]:
    """The weights of ``slices_at``: (matrix (len(centres), w) float32, first): slice ``i`` is
    ``sum_k matrix[i, k] * fine[first + k]``, the voxels beyond ``0 .. size - 1`` folded back onto
    their mirror images (half-sample symmetric)."""
    centres = np.asarray(centres, np.float64)
    if centres.size == 0:
        return np.zeros((0, 0), np.float32), 0
    below = np.floor(centres + 1e-9).astype(np.int64)
    rows, columns, values = [], [], []
    for i, centre in enumerate(centres):
        start, taps = profile_weights(profile, thickness, float(centre - below[i]))
        index = np.mod(below[i] + start + np.arange(len(taps)), 2 * size)
        rows.append(np.full(len(taps), i))
        columns.append(np.where(index < size, index, 2 * size - 1 - index))
        values.append(taps)
    columns_all = np.concatenate(columns)
    first = int(columns_all.min())
    matrix = np.zeros((len(centres), int(columns_all.max()) - first + 1), np.float64)
    np.add.at(matrix, (np.concatenate(rows), columns_all - first), np.concatenate(values))
    return matrix.astype(np.float32), first
