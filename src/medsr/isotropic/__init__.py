"""Through-plane super-resolution of thick-slice volumes, self-supervised (SMORE lineage).

A thick-slice volume is fine in plane and coarse along its slice axis. ``through_plane`` trains a 2D
network on pairs made from the volume's own in-plane slices (one in-plane axis degraded with the
slice profile at the volume's factor: ``fit``), then applies it to the planes through the slice axis
in both orthogonal orientations and averages them (``reconstruct``). Nothing outside the volume is
needed; the network starts from the built-in model where it is installed (``network``).

The output has ``factor = slice spacing / target spacing`` slices per input slice (a whole number
or not; the target is the finest in-plane spacing unless given: an isotropic output), over the
same field of view: ``fine_count(n, factor)`` slices for ``n``, output slice ``m`` lying ``(m +
0.5) / factor - 0.5`` slice spacings from input slice 0.

The network learns on the in-plane pixel grid, the only fine truth a volume has: it reconstructs
``slice spacing / in-plane spacing`` slices per slice, and another target spacing is reached by
resampling of that along the slice axis (``to_target``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from medsr.choices import DEFAULT_MODEL
from medsr.errors import MedsrError
from medsr.io.volume import check_finite
from medsr.isotropic.profile import PROFILES, Profile, fine_count, slices_at, thick_slices
from medsr.isotropic.reconstruct import bspline_upsample

if TYPE_CHECKING:
    import torch

    from medsr.isotropic.fit import FitRecord
    from medsr.isotropic.network import ThroughPlaneNet

__all__ = [
    "DEFAULT_BUDGET",
    "PROFILES",
    "NothingToDo",
    "ThroughPlaneOptions",
    "ThroughPlaneResult",
    "bspline_upsample",
    "fine_count",
    "plan_factor",
    "thick_slices",
    "through_plane",
]
log = logging.getLogger(__name__)
MIN_RATIO = 1.2  # slice spacing / in-plane spacing below which there is nothing to do
WHOLE = 1e-3  # a factor this close to a whole number is taken as that number
DEFAULT_BUDGET = {"cpu": 300.0, "cuda": 40.0}  # training seconds per volume, by device type


class NothingToDo(MedsrError):
    """The slices are (nearly) as fine as the in-plane pixels."""


@dataclass(frozen=True)
class ThroughPlaneOptions:
    profile: Profile = "gaussian"  # the slice profile: gaussian (FWHM = thickness) or rect
    thickness: float | None = None  # slice thickness in mm (default: the slice spacing)
    target_spacing: float | None = None  # output slice spacing in mm (default: the finest in-plane spacing)
    time_budget: float | None = None  # seconds of training per volume (default: DEFAULT_BUDGET by device)
    start: str = DEFAULT_MODEL  # built-in model to start from, or "scratch"
    device: str = "auto"
    precision: str = "bf16"  # training arithmetic (autocast); reconstruction runs in fp32
    max_iterations: int | None = None  # stop training earlier (tests)
    seed: int = 0


@dataclass
class ThroughPlaneResult:
    volume: np.ndarray  # float32 physical values, fine_count(n, factor) samples along the slice axis
    spacing: tuple[float, ...]  # the output's voxel spacing (mm)
    slice_axis: int
    factor: float  # output slices per input slice
    started_from: str  # the built-in model's label, or "scratch"
    fit: "FitRecord"  # medsr.isotropic.fit (imported with torch when needed)


def plan_factor(spacing: tuple[float, ...], slice_axis: int, target_spacing: float | None = None) -> float:
    """Output slices per input slice: ``slice spacing / target`` (a whole number when within 0.001
    of one); the target defaults to the finest in-plane spacing.

    Raises:
        NothingToDo: the slice spacing is below 1.2 times the in-plane spacing.
        ValueError: a spacing or the target is not positive, or the target is not 1.2 times finer
            than the slices.
    """
    if any(not s > 0 for s in spacing) or (target_spacing is not None and not target_spacing > 0):
        raise ValueError(f"spacings must be positive, got {tuple(spacing)} and target {target_spacing}")
    in_plane = min(s for axis, s in enumerate(spacing) if axis != slice_axis)
    ratio = spacing[slice_axis] / in_plane
    if ratio < MIN_RATIO:
        raise NothingToDo(
            f"the slice spacing ({spacing[slice_axis]:g} mm) is only {ratio:.2f} times the in-plane "
            f"spacing ({in_plane:g} mm), below {MIN_RATIO}: nothing to do"
        )
    factor = spacing[slice_axis] / (target_spacing or in_plane)
    if factor < MIN_RATIO:
        raise ValueError(
            f"the target spacing ({target_spacing:g} mm) must be at least {MIN_RATIO} times finer than the "
            f"slice spacing ({spacing[slice_axis]:g} mm)"
        )
    return float(round(factor)) if abs(factor - round(factor)) < WHOLE else factor


def through_plane(
    volume: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    slice_axis: int | None = None,
    options: ThroughPlaneOptions = ThroughPlaneOptions(),
    progress: bool = False,
    label: str = "",
) -> ThroughPlaneResult:
    """Super-resolve a thick-slice volume along its slice axis (see the module docstring).

    Args:
        volume: (3-D) array of finite values in any units (HU, MR intensities); not modified.
        spacing: voxel spacing in mm per axis.
        slice_axis: the thick axis (default: the one with the largest spacing).
        options: profile, thickness, target spacing, time budget, start model, device.
        progress: show progress bars on stderr.
        label: what the progress bars name (the volume's file).

    Returns:
        The reconstruction in the input's units and axis order (values kept inside the input's
        range), its spacing, the factor and the training record.

    Raises:
        NothingToDo: the slices are already about as fine as the pixels.
        MedsrError: not a finite 3-D volume, or too small for the factor.
    """
    from tqdm import tqdm

    from medsr.isotropic.reconstruct import reconstruct

    data = np.asarray(volume)
    if data.ndim != 3 or len(spacing) != 3:
        raise MedsrError(f"through-plane super-resolution needs a 3-D volume, got shape {data.shape}")
    check_finite(data)
    axis = int(np.argmax(spacing)) if slice_axis is None else slice_axis
    factor = plan_factor(tuple(spacing), axis, options.target_spacing)
    learned = plan_factor(tuple(spacing), axis)  # slices to in-plane pixels: what the pairs teach
    zyx = np.moveaxis(data, axis, 0).astype(np.float32)
    if min(zyx.shape[1:]) < 4 * learned or zyx.shape[0] < 2:
        raise MedsrError(f"volume {data.shape} is too small for {learned:g} slices per slice")
    lo, hi = float(zyx.min()), float(zyx.max())
    unit = (zyx - lo) / ((hi - lo) or 1.0)
    prefix = f"{label[-40:]}: " if label else ""
    pixel = spacing[axis] / learned
    thickness = (options.thickness or spacing[axis]) / pixel  # in in-plane pixels
    network, started_from, record, device = _fit(unit, learned, thickness, options, progress, prefix)
    planes = unit.shape[1] + unit.shape[2]
    with tqdm(
        total=planes, desc=f"{prefix}reconstruct", unit="plane", disable=not progress, leave=False
    ) as bar:
        out = reconstruct(network, unit, device, on_planes=bar.update)
    out *= (hi - lo) or 1.0
    out += lo
    np.clip(out, lo, hi, out=out)
    if factor != learned:
        out = to_target(out, learned, factor, fine_count(unit.shape[0], factor))
        np.clip(out, lo, hi, out=out)
    out_spacing = list(spacing)
    out_spacing[axis] = spacing[axis] / factor
    return ThroughPlaneResult(
        np.moveaxis(out, 0, axis), tuple(out_spacing), axis, factor, started_from, record
    )


def to_target(volume: np.ndarray, learned: float, factor: float, count: int) -> np.ndarray:
    """A reconstruction with ``learned`` samples per slice along axis 0 -> ``count`` samples at
    ``factor`` per slice over the same field of view: a finer target by cubic B-spline
    interpolation, a coarser one by averaging over each target voxel's extent (no aliasing)."""
    ratio = learned / factor  # learned samples per target sample
    if ratio < 1:
        return bspline_upsample(volume, 1 / ratio, count=count)
    return slices_at(volume, 0, np.arange(count) * ratio + (ratio - 1) / 2, ratio, "rect")


def _fit(
    unit: np.ndarray,
    factor: float,
    thickness: float,
    options: ThroughPlaneOptions,
    progress: bool,
    prefix: str,
) -> tuple[ThroughPlaneNet, str, FitRecord, torch.device]:
    """Build and fine-tune the network on ``unit`` (Z, Y, X) in [0, 1] with ``factor`` in-plane
    pixels per slice and ``thickness`` in pixels: (network in inference form, what it started
    from, the training record, the device)."""
    from tqdm import tqdm

    from medsr.isotropic.fit import FitSettings, PairSampler, fine_tune
    from medsr.isotropic.network import build_network
    from medsr.models.network import pick_device

    device = pick_device(options.device)
    network, started_from = build_network(factor, options.start)
    budget = options.time_budget or DEFAULT_BUDGET.get(device.type, DEFAULT_BUDGET["cpu"])
    settings = FitSettings(
        seconds=budget, max_iterations=options.max_iterations, precision=options.precision, seed=options.seed
    )
    sampler = PairSampler(unit, factor, thickness, options.profile, settings)
    with tqdm(total=round(budget), desc=f"{prefix}train", unit="s", disable=not progress, leave=False) as bar:
        record = fine_tune(network, sampler, settings, device, lambda _, t: bar.update(round(t) - bar.n))
    if hasattr(network.trunk, "inference_form"):  # from scratch: merge the re-parameterised blocks
        network.trunk = network.trunk.inference_form().to(device)
    return network, started_from, record, device
