"""A large-kernel convolution to few output channels, rewritten as partial maps plus shifted sums.

SRResNet's last layer is a 9 x 9 convolution from 64 feature channels to the single image channel,
run at 4x the resolution of the rest of the network. Neither cuDNN nor oneDNN has a good kernel for
one output channel: this one layer took 58% of the network's time on an H100 and about 30% on a
CPU (``benchmarks/README.md``). ``TapSumConv2d`` computes the same function in two steps:

1. partial maps with many channels, which the libraries do run well:
   - ``partial="pixel"`` (GPUs): one dense (k*k*O x C) @ (C x pixels) product gives the
     contribution of every tap (a, b) at every pixel: k*k maps per output channel;
   - ``partial="column"`` (CPUs): a k x 1 convolution gives, for every column offset b, the sum
     over the kernel's column at every pixel: k maps per output channel;
2. each output pixel sums its maps, each shifted by its tap's offset, in float32: under
   ``torch.compile`` one fused kernel over a padded view; in eager mode in-place additions over
   each map's valid region (no padded copy).

(The same trick the other way round, im2col + one product for the 1 -> 64 head, was slower than
cuDNN's convolution on the H100: the gather of 81 shifted copies compiled to one kernel per copy.)

Only stride 1, dilation 1, one group and zero "same" padding, as SRResNet uses; outputs equal the
original convolution's up to float rounding (tested). Used by ``medsr.models.srresnet.for_inference``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Partial = Literal["pixel", "column"]


def _check_same_padding(conv: nn.Conv2d) -> int:
    k = conv.kernel_size[0]
    if (conv.kernel_size != (k, k) or k % 2 == 0 or conv.stride != (1, 1) or conv.dilation != (1, 1)
            or conv.groups != 1 or conv.padding != (k // 2, k // 2) or conv.padding_mode != "zeros"):
        raise ValueError(f"only odd square stride-1 'same' convolutions can be rewritten, got {conv}")
    return k


class TapSumConv2d(nn.Module):
    """A k x k convolution computed as partial maps and a float32 sum of the shifted maps.

    Args:
        conv: the convolution to replace (its weights are copied).
        partial: ``pixel`` (one matrix product to k*k maps; fastest on GPUs) or ``column`` (a k x 1
            convolution to k maps; fastest on CPUs).

    Shapes: (N, C_in, H, W) -> (N, C_out, H, W) float32.
    """

    def __init__(self, conv: nn.Conv2d, partial: Partial = "pixel") -> None:
        super().__init__()
        if partial not in ("pixel", "column"):
            raise ValueError(f"partial must be 'pixel' or 'column', got {partial!r}")
        k = self.kernel = _check_same_padding(conv)
        self.partial, self.out_channels = partial, conv.out_channels
        weight = conv.weight.detach()  # (O, C, a, b)
        if partial == "pixel":  # (O*k*k, C): row (o, a, b) holds tap (a, b) of output channel o
            weight = weight.permute(0, 2, 3, 1).reshape(-1, conv.in_channels)
            self.shifts = [(a - k // 2, b - k // 2) for a in range(k) for b in range(k)]
        else:  # (O*k, C, k, 1): filter (o, b) is column b of output channel o's kernel
            weight = weight.permute(0, 3, 1, 2).reshape(-1, conv.in_channels, k, 1)
            self.shifts = [(0, b - k // 2) for b in range(k)]
        self.weight = nn.Parameter(weight.contiguous())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        weight = self.weight.to(x.dtype)
        if self.partial == "pixel":
            maps = torch.matmul(weight, x.flatten(2))  # (N, O*k*k, H*W): coalesced rows per tap
        else:
            maps = F.conv2d(x, weight, padding=(self.kernel // 2, 0))  # (N, O*k, H, W)
        maps = maps.view(n, self.out_channels, len(self.shifts), h, w)
        shift_sum = _padded_shift_sum if torch.compiler.is_compiling() else _shift_sum_in_place
        out = shift_sum(maps, self.shifts, self.kernel // 2)
        if self.bias is not None:
            out = out + self.bias.float().view(1, -1, 1, 1)
        return out


def _padded_shift_sum(maps: torch.Tensor, shifts: list[tuple[int, int]], pad: int) -> torch.Tensor:
    """(N, O, T, H, W) -> (N, O, H, W) float32: out[i, j] = sum over t of maps[t, i + dy_t, j + dx_t]
    (zero outside; |dy|, |dx| <= pad). One expression over a padded tensor, so that
    ``torch.compile`` fuses it into a single kernel."""
    h, w = maps.shape[-2:]
    padded = F.pad(maps.float(), (pad, pad, pad, pad))
    return sum(padded[:, :, t, pad + dy : pad + dy + h, pad + dx : pad + dx + w] for t, (dy, dx) in enumerate(shifts))


def _shift_sum_in_place(maps: torch.Tensor, shifts: list[tuple[int, int]], pad: int) -> torch.Tensor:
    """The same sum for eager mode: each map is added over its valid region into one float32
    output, so no padded copy of the maps is made (memory stays that of the maps)."""
    n, o, _, h, w = maps.shape
    out = torch.zeros(n, o, h, w, dtype=torch.float32, device=maps.device)
    for t, (dy, dx) in enumerate(shifts):
        rows, cols = _overlap(dy, h), _overlap(dx, w)
        if rows and cols:
            out[:, :, rows[0], cols[0]] += maps[:, :, t, rows[1], cols[1]]
    return out


def _overlap(shift: int, size: int) -> tuple[slice, slice] | None:
    """Output and input index ranges where ``out[i] += map[i + shift]`` stays inside ``size``."""
    start, stop = max(0, -shift), min(size, size - shift)
    return (slice(start, stop), slice(start + shift, stop + shift)) if start < stop else None
