"""Tiled inference: super-resolve images of any size in bounded memory, without seams.

The LR image is cut into ``tile`` x ``tile`` tiles on a grid. Each tile's output is weighted by a
separable profile that is 0 for ``context`` LR pixels at the tile's inner edges (where the network
sees the tile border instead of the real neighbours), then ramps linearly over ``blend`` pixels to 1.
With ``context`` at least the model's receptive radius, every weighted output pixel equals the
whole-image output, so the blend is exact (up to float rounding) and no seam can appear. Since the
tiles form a grid, the sum of weights is the outer product of two 1-D profiles: only the output
image itself is held in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from medsr.models.base import SRModel


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return sorted(set(starts))


def _profile(start: int, size: int, length: int, context: int, blend: int) -> np.ndarray:
    """1-D weights of a tile along one axis (LR pixels); image borders keep full weight."""
    weights = np.ones(size, dtype=np.float64)
    ramp = np.linspace(1.0 / (blend + 1), blend / (blend + 1), blend) if blend else np.zeros(0)
    if start > 0:
        weights[:context] = 0.0
        weights[context : context + blend] = ramp
    if start + size < length:
        weights[size - context :] = 0.0
        weights[size - context - blend : size - context] = ramp[::-1]
    return weights


def enhance_tiled(
    model: SRModel,
    lq: np.ndarray,
    *,
    tile: int = 256,
    context: int | None = None,
    blend: int = 8,
    batch: int = 4,
    on_tile: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Super-resolve a 2-D image tile by tile.

    Args:
        model: any ``SRModel``.
        lq: float (H, W) in [0, 1].
        tile: tile side in LR pixels (the image itself when it is smaller).
        context: LR pixels discarded at inner tile edges (default: the model's receptive radius).
        blend: LR pixels of linear cross-fade after the context.
        batch: tiles per forward pass.
        on_tile: called with the number of tiles finished (for progress bars).

    Returns:
        float32 (scale*H, scale*W) in [0, 1].
    """
    lq = np.asarray(lq, dtype=np.float32)
    if lq.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {lq.shape}")
    height, width = lq.shape
    context = model.receptive_radius if context is None else context
    if height <= tile and width <= tile:
        out = model.enhance(lq)
        if on_tile:
            on_tile(1)
        return out
    size_y, size_x = min(tile, height), min(tile, width)
    if min(size_y, size_x) <= 2 * (context + blend):
        raise ValueError(f"tile {tile} is too small for context {context} and blend {blend}")
    step_y, step_x = size_y - 2 * context - blend, size_x - 2 * context - blend
    ys, xs = _starts(height, size_y, step_y), _starts(width, size_x, step_x)
    s = model.scale
    out = np.zeros((height * s, width * s), dtype=np.float32)
    total_y = np.zeros(height * s)
    total_x = np.zeros(width * s)
    profiles_y = {y: np.repeat(_profile(y, size_y, height, context, blend), s) for y in ys}
    profiles_x = {x: np.repeat(_profile(x, size_x, width, context, blend), s) for x in xs}
    for y in ys:
        total_y[y * s : (y + size_y) * s] += profiles_y[y]
    for x in xs:
        total_x[x * s : (x + size_x) * s] += profiles_x[x]
    positions = [(y, x) for y in ys for x in xs]
    for first in range(0, len(positions), batch):
        chunk = positions[first : first + batch]
        tiles = np.stack([lq[y : y + size_y, x : x + size_x] for y, x in chunk])[:, None]
        for (y, x), sr in zip(chunk, model.enhance_batch(tiles)):
            weight = np.outer(
                profiles_y[y] / total_y[y * s : (y + size_y) * s],
                profiles_x[x] / total_x[x * s : (x + size_x) * s],
            )
            out[y * s : (y + size_y) * s, x * s : (x + size_x) * s] += (sr[0] * weight).astype(np.float32)
        if on_tile:
            on_tile(len(chunk))
    return np.clip(out, 0.0, 1.0, out=out)


def tile_count(shape: tuple[int, int], tile: int, context: int, blend: int = 8) -> int:
    """How many tiles ``enhance_tiled`` will run for an LR image of ``shape``."""
    height, width = shape
    if height <= tile and width <= tile:
        return 1
    size_y, size_x = min(tile, height), min(tile, width)
    return len(_starts(height, size_y, size_y - 2 * context - blend)) * len(
        _starts(width, size_x, size_x - 2 * context - blend)
    )
