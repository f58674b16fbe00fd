"""Applying the through-plane network to a volume, and the cubic B-spline baseline.

Volumes here are (Z, Y, X) with Z the slice axis. The network sees the planes through the slice
axis in both orthogonal orientations, (Z, X) for every Y and (Z, Y) for every X; the two
reconstructions are averaged (each recovers detail along Z with a different in-plane neighbourhood,
and their errors are partly independent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from medsr.isotropic.profile import fine_count

if TYPE_CHECKING:
    import torch


def bspline_upsample(
    volume: np.ndarray, factor: float, axis: int = 0, count: int | None = None
) -> np.ndarray:
    """Cubic B-spline interpolation along ``axis`` by ``factor`` (a whole number or not), the usual
    baseline: the output grid covers the same field of view, output ``m`` lies ``(m + 0.5) / factor
    - 0.5`` input spacings from input 0 (as ``profile`` places fine voxels under slices); mirror
    boundaries.

    Returns:
        float32 array with ``count`` samples along ``axis`` (default ``fine_count(volume.shape[axis],
        factor)``).
    """
    from scipy import ndimage

    data = np.asarray(volume, np.float32)
    shape, step, offset = list(data.shape), [1.0] * data.ndim, [0.0] * data.ndim
    shape[axis] = fine_count(data.shape[axis], factor) if count is None else count
    step[axis], offset[axis] = 1.0 / factor, 0.5 / factor - 0.5  # output m -> input (m + 0.5) / factor - 0.5
    return ndimage.affine_transform(
        data, step, offset=offset, output_shape=tuple(shape), order=3, mode="reflect"
    )


def reconstruct(
    network: torch.nn.Module,
    volume: np.ndarray,
    device: torch.device,
    *,
    batch: int = 8,
    precision: str = "fp32",
    on_planes: Callable[[int], None] | None = None,
) -> np.ndarray:
    """(Z, Y, X) float32 on [0, 1] -> (fine_count(Z, factor), Y, X) float32: the mean of the network
    applied to every (Z, X) plane and to every (Z, Y) plane; ``on_planes(n)`` after each batch of n
    planes."""
    import torch

    z, y, x = volume.shape
    out = np.zeros((fine_count(z, network.factor), y, x), np.float32)
    source = torch.from_numpy(np.ascontiguousarray(volume, np.float32))
    autocast = precision == "bf16"
    network.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for start in range(0, y, batch):  # (Z, X) planes, one per Y
            planes = _planes(source[:, start : start + batch, :].permute(1, 0, 2), device)
            result = network(planes).float()[:, 0].permute(1, 0, 2).cpu().numpy()
            out[:, start : start + batch, :] += result
            if on_planes:
                on_planes(planes.shape[0])
        for start in range(0, x, batch):  # (Z, Y) planes, one per X
            planes = _planes(source[:, :, start : start + batch].permute(2, 0, 1), device)
            result = network(planes).float()[:, 0].permute(1, 2, 0).cpu().numpy()
            out[:, :, start : start + batch] += result
            if on_planes:
                on_planes(planes.shape[0])
    out *= 0.5
    return out


def _planes(stack: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(B, rows, columns) -> (B, 1, rows, columns) on ``device``, channels-last (faster convolutions)."""
    import torch

    return stack[:, None].to(device).contiguous(memory_format=torch.channels_last)
