"""A large-kernel convolution to few output channels, computed as partial maps plus shifted sums.

SRResNet's last layer is a 9 x 9 convolution from 64 feature channels to the single image channel,
run at 4x the resolution of the rest of the network. Neither cuDNN nor oneDNN has a good kernel for
one output channel: this one layer took 58% of the network's time on an H100 and about 30% on a
CPU (``benchmarks/README.md``). ``TapSumConv2d`` is an ``nn.Conv2d`` (same parameters, same
``state_dict``, so checkpoints do not change) whose forward computes the same function in two steps:

1. partial maps with many channels, which the libraries do run well:
   - ``pixel`` (GPU inference): one dense (k*k*O x C) @ (C x pixels) product gives the
     contribution of every tap (a, b) at every pixel: k*k maps per output channel;
   - ``column`` (CPUs, training and inference): a k x 1 convolution gives, for every column
     offset b, the sum over the kernel's column at every pixel: k maps per output channel;
2. each output pixel sums its maps, each shifted by its tap's offset, in float32: under
   ``torch.compile`` one fused kernel over a padded view; in eager mode in-place additions over
   each map's valid region (no padded copy).

GPU training keeps cuDNN's convolution (its speed there was measured with it), as do other devices.
(The same trick the other way round, im2col + one product for the 1 -> 64 head, was slower than
cuDNN's convolution on the H100: the gather of 81 shifted copies compiled to one kernel per copy.)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Form = Literal["auto", "conv", "pixel", "column"]
FORMS = ("auto", "conv", "pixel", "column")


class TapSumConv2d(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, k, padding=k // 2)`` (odd k, stride 1, zero padding),
    computed as partial maps plus shifted sums where that is faster (see the module docstring).

    ``form`` forces one computation (``conv``: the plain convolution, ``pixel``, ``column``) on any
    device; ``auto`` (default) picks by device and grad mode.

    Shapes: (N, C_in, H, W) -> (N, C_out, H, W); float32 from the rewritten forms (their sum is
    accumulated in float32), the input's dtype from the plain convolution.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, form: Form = "auto") -> None:
        if kernel_size % 2 == 0:
            raise ValueError(f"TapSumConv2d needs an odd kernel size, got {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.form = form

    @property
    def form(self) -> Form:
        return self._form

    @form.setter
    def form(self, value: Form) -> None:
        if value not in FORMS:
            raise ValueError(f"form must be one of {', '.join(FORMS)}, got {value!r}")
        self._form = value

    def form_for(self, x: torch.Tensor) -> Form:
        """The computation used for input ``x``: ``conv``, ``pixel`` or ``column``."""
        if self.form != "auto":
            return self.form
        if x.device.type == "cpu":
            return "column"
        if x.device.type == "cuda" and not torch.is_grad_enabled():
            return "pixel"
        return "conv"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        form = self.form_for(x)
        if form == "conv":
            return super().forward(x)
        n, _, h, w = x.shape
        k, out_channels = self.kernel_size[0], self.out_channels
        weight = self.weight.to(x.dtype)  # (O, C, a, b)
        if form == "pixel":  # (O*k*k, C): row (o, a, b) holds tap (a, b) of output channel o
            rows = weight.permute(0, 2, 3, 1).reshape(-1, self.in_channels)
            maps = torch.matmul(rows, x.flatten(2))  # (N, O*k*k, H*W): coalesced rows per tap
            shifts = [(a - k // 2, b - k // 2) for a in range(k) for b in range(k)]
        else:  # (O*k, C, k, 1): filter (o, b) is column b of output channel o's kernel
            columns = weight.permute(0, 3, 1, 2).reshape(-1, self.in_channels, k, 1)
            maps = F.conv2d(x, columns, padding=(k // 2, 0))  # (N, O*k, H, W)
            shifts = [(0, b - k // 2) for b in range(k)]
        maps = maps.view(n, out_channels, len(shifts), h, w)
        shift_sum = _padded_shift_sum if torch.compiler.is_compiling() else _shift_sum_in_place
        out = shift_sum(maps, shifts, k // 2)
        if self.bias is not None:
            out = out + self.bias.float().view(1, -1, 1, 1)
        return out


def _padded_shift_sum(maps: torch.Tensor, shifts: list[tuple[int, int]], pad: int) -> torch.Tensor:
    """(N, O, T, H, W) -> (N, O, H, W) float32: out[i, j] = sum over t of maps[t, i + dy_t, j + dx_t]
    (zero outside; |dy|, |dx| <= pad). One expression over a padded tensor, so that
    ``torch.compile`` fuses it into a single kernel."""
    h, w = maps.shape[-2:]
    padded = F.pad(maps.float(), (pad, pad, pad, pad))
    return sum(
        padded[:, :, t, pad + dy : pad + dy + h, pad + dx : pad + dx + w] for t, (dy, dx) in enumerate(shifts)
    )


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
