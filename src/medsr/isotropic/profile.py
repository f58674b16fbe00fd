"""Slice profiles and the thick-slice degradation: what a scanner does along the slice axis.

A thick slice is the tissue under its slice profile: a Gaussian (FWHM = the slice thickness) or a
rectangle (width = the thickness), centred on the slice. On a fine grid of voxels of unit length,
slice ``i`` of a stack with ``factor`` fine voxels per slice spacing is centred at
``i * factor + (factor - 1) / 2`` (the fine voxels ``i * factor ... i * factor + factor - 1`` lie
under its spacing: the same field of view), and its value is the sum of the fine voxels weighted by
the profile integrated over each voxel's extent (exact for voxels, also when the thickness is below
one voxel). A thickness below the spacing leaves a gap between slices; above it, slices overlap.

The same function makes the training pairs (along an in-plane axis of the real volume) and the
simulated thick volumes of the evaluation (along the slice axis of an isotropic one).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

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


def thick_slices(fine: np.ndarray, axis: int, factor: int, thickness: float, profile: Profile) -> np.ndarray:
    """Thick slices of ``fine`` along ``axis``: one per ``factor`` fine voxels (see the module docstring).

    Args:
        fine: array (any number of dimensions) on a grid of unit voxels along ``axis``.
        factor: fine voxels per slice spacing (integer, >= 1).
        thickness: the slice thickness in fine voxels (FWHM for ``gaussian``).

    Returns:
        float32 array with ``fine.shape[axis] // factor`` slices along ``axis`` (a last incomplete
        spacing is dropped); voxels beyond the ends are taken as their mirror image.
    """
    if factor < 1 or int(factor) != factor:
        raise ValueError(f"factor must be a whole number >= 1, got {factor}")
    moved = np.moveaxis(np.asarray(fine, np.float32), axis, 0)
    count = moved.shape[0] // factor
    centre = (factor - 1) / 2
    first, weights = profile_weights(profile, thickness, centre - math.floor(centre))
    pad = max(0, -first - math.floor(centre), first + len(weights) - 1 + math.floor(centre) + 1 - factor)
    padded = np.pad(moved, [(pad, pad)] + [(0, 0)] * (moved.ndim - 1), mode="symmetric")
    out = np.zeros((count, *moved.shape[1:]), np.float32)
    for shift, weight in enumerate(weights):
        start = pad + math.floor(centre) + first + shift  # the fine voxel under this weight, for slice 0
        out += np.float32(weight) * padded[start : start + factor * count : factor][:count]
    return np.moveaxis(out, 0, axis)
