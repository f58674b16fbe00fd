"""The through-plane network: SPAN features on the thick grid, rows upsampled by ``factor``.

Input: a plane through the slice axis, rows = slices (thick), columns = an in-plane axis (fine).
Output: the same plane with ``factor`` rows per input row (``fine_count(rows, factor)`` of them),
placed as ``profile`` places fine voxels under slices (output row ``m`` lies ``(m + 0.5) / factor -
0.5`` input rows from input row 0), plus the cubic interpolation of the input along rows (a global
skip: the network adds detail). The network makes ``subpixels`` rows per input row (a whole number:
``factor`` when it is one); for a fractional factor, a cubic resampling along rows takes them to the
output grid, inside the network, so that training sees it (as ECLARE does).

It starts from the built-in model ``medsr-x4`` where it exists (every SPAN layer; the last
convolution, which makes 4 x 4 sub-pixels in the built-in, gives its row sub-pixels, averaged over
columns, when ``subpixels`` is 4) and from scratch otherwise.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import nn

from medsr.isotropic.profile import fine_count
from medsr.models.arch.span import SPAN

SNAP = 0.02  # a factor at most this fraction above a whole number makes that many sub-pixels

log = logging.getLogger(__name__)


class ThroughPlaneNet(nn.Module):
    """(N, 1, h, w) in [0, 1] -> (N, 1, fine_count(h, factor), w), rows upsampled (see the module
    docstring)."""

    def __init__(self, factor: float, trunk: SPAN | None = None) -> None:
        super().__init__()
        if not factor > 1:
            raise ValueError(f"through-plane factor must be above 1, got {factor}")
        self.factor = factor
        self.subpixels = subpixels(factor)
        self.trunk = trunk if trunk is not None else SPAN(scale=4, channels=48, blocks=6)
        self.trunk.upsample = nn.Identity()  # replaced by the row upsampler
        channels = self.trunk.fuse.out_channels
        self.rows = nn.Conv2d(channels, self.subpixels, 3, padding=1)
        with torch.no_grad():  # start close to the interpolation
            self.rows.weight.mul_(0.1)
            self.rows.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        sub = self.rows(self.trunk.features(x))  # (N, subpixels, h, w): row sub-pixels
        rows = sub.permute(0, 2, 1, 3).reshape(n, 1, h * self.subpixels, w)
        if self.subpixels != self.factor:
            rows = resample_rows(rows, self.factor / self.subpixels, fine_count(h, self.factor))
        return rows + resample_rows(x, self.factor, fine_count(h, self.factor))


def subpixels(factor: float) -> int:
    """Row sub-pixels per input row for ``factor``: the whole number at or above it (at least 2),
    or the one just below when ``factor`` exceeds that by at most ``SNAP`` of it."""
    below = math.floor(factor)
    return max(2, below if factor - below <= SNAP * below + 1e-9 else math.ceil(factor))


def resample_rows(x: torch.Tensor, step: float, count: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, count, w): cubic convolution along rows (Keys, a = -0.75, edge rows
    repeated: what ``F.interpolate(mode="bicubic")`` does), output row ``m`` taken at input row
    ``(m + 0.5) / step - 0.5``. A whole ``step`` uses ``F.interpolate`` itself. Computed in float32
    whatever the autocast (bf16 would round the whole skip path by up to 0.007 of the range)."""
    h, w = x.shape[-2:]
    if step == int(step) and count == h * int(step):
        return F.interpolate(x, size=(count, w), mode="bicubic", align_corners=False)
    with torch.autocast(x.device.type, enabled=False):
        return torch.einsum("oh,nchw->ncow", cubic_matrix(h, count, step).to(x.device), x.float())


def cubic_matrix(size: int, count: int, step: float) -> torch.Tensor:
    """(count, size) float32 matrix of the cubic resampling in ``resample_rows``."""
    where = (torch.arange(count, dtype=torch.float64) + 0.5) / step - 0.5
    below = torch.floor(where)
    matrix = torch.zeros(count, size, dtype=torch.float64)
    for tap in range(-1, 3):
        distance = (where - (below + tap)).abs()
        weight = torch.where(
            distance <= 1,
            (1.25 * distance - 2.25) * distance**2 + 1,
            ((-0.75 * distance + 3.75) * distance - 6) * distance + 3,
        )
        index = (below + tap).clamp(0, size - 1).long()
        matrix.index_put_((torch.arange(count), index), weight, accumulate=True)
    return matrix.float()


def build_network(factor: float, start: str) -> tuple[ThroughPlaneNet, str]:
    """A ``ThroughPlaneNet`` for ``factor``, from the built-in model ``start`` where it is installed
    (``"scratch"`` or a missing model: random weights).

    Returns:
        (network in train mode on the CPU, what it started from: the model's label or ``scratch``).
    """
    from medsr.models.builtin import builtin_names

    if start == "scratch" or start not in builtin_names():
        return ThroughPlaneNet(factor), "scratch"
    from medsr.models.builtin import load_builtin

    model = load_builtin(start, device="cpu")
    trunk = model.module.to(memory_format=torch.contiguous_format)  # inference form: plain 3x3 convs
    upsampler = trunk.upsample[0]  # (scale * scale, channels, 3, 3): sub-pixel (i, j) at i * scale + j
    network = ThroughPlaneNet(factor, trunk)
    scale = model.scale
    if network.subpixels == scale:
        with torch.no_grad():
            network.rows.weight.copy_(
                upsampler.weight.view(scale, scale, *upsampler.weight.shape[1:]).mean(1)
            )
            network.rows.bias.copy_(upsampler.bias.view(scale, scale).mean(1))
    return network.train().requires_grad_(True), model.label
