"""The through-plane network: SPAN features on the thick grid, rows upsampled by a whole factor.

Input: a plane through the slice axis, rows = slices (thick), columns = an in-plane axis (fine).
Output: the same plane with ``factor`` rows per input row, centred as ``profile`` centres slices
(output row ``i * factor + j`` lies ``(j + 0.5) / factor - 0.5`` slice spacings from input row i),
plus the cubic interpolation of the input along rows (a global skip: the network adds detail).

It starts from the built-in model ``medsr-x4`` where it exists (every SPAN layer; the last
convolution, which makes 4 x 4 sub-pixels in the built-in, gives its row sub-pixels, averaged over
columns, when the factor is 4) and from scratch otherwise.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.arch.span import SPAN

log = logging.getLogger(__name__)


class ThroughPlaneNet(nn.Module):
    """(N, 1, h, w) in [0, 1] -> (N, 1, factor * h, w), rows upsampled (see the module docstring)."""

    def __init__(self, factor: int, trunk: SPAN | None = None) -> None:
        super().__init__()
        if factor < 2:
            raise ValueError(f"through-plane factor must be at least 2, got {factor}")
        self.factor = factor
        self.trunk = trunk if trunk is not None else SPAN(scale=4, channels=48, blocks=6)
        self.trunk.upsample = nn.Identity()  # replaced by the row upsampler
        channels = self.trunk.fuse.out_channels
        self.rows = nn.Conv2d(channels, factor, 3, padding=1)
        with torch.no_grad():  # start close to the interpolation
            self.rows.weight.mul_(0.1)
            self.rows.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        sub = self.rows(self.trunk.features(x))  # (N, factor, h, w): row sub-pixels
        rows = sub.permute(0, 2, 1, 3).reshape(n, 1, h * self.factor, w)
        return rows + F.interpolate(x, size=(h * self.factor, w), mode="bicubic", align_corners=False)


def build_network(factor: int, start: str) -> tuple[ThroughPlaneNet, str]:
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
    if factor == model.scale:
        with torch.no_grad():
            network.rows.weight.copy_(
                upsampler.weight.view(factor, factor, *upsampler.weight.shape[1:]).mean(1)
            )
            network.rows.bias.copy_(upsampler.bias.view(factor, factor).mean(1))
    return network.train().requires_grad_(True), model.label
