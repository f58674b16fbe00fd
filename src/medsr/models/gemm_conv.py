"""A large-kernel convolution to few output channels, rewritten as a matrix product for GPUs.

SRResNet's last layer is a 9 x 9 convolution from 64 feature channels to the single image channel,
run at 4x the resolution of the rest of the network. cuDNN maps one output channel badly onto
tensor cores: on an H100 this one layer took 58% of the network's time (``benchmarks/README.md``).
``TapSumConv2d`` computes the same function as one dense (k*k*O x C) @ (C x pixels) product, which
gives every tap's contribution at every pixel ("tap maps"), and a sum of the k*k shifted tap maps
per output pixel: under ``torch.compile`` one fused kernel over a padded view, in eager mode
in-place additions over each map's valid region (no padded copy).

(The same trick the other way round, im2col + one product for the 1 -> 64 head, was slower than
cuDNN's convolution: the gather of 81 shifted copies compiled to one kernel per copy.)

Only stride 1, dilation 1, one group and zero "same" padding, as SRResNet uses; outputs equal the
original convolution's up to float rounding (tested). Used by
``medsr.models.srresnet.for_gpu_inference``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_same_padding(conv: nn.Conv2d) -> int:
    k = conv.kernel_size[0]
    if (conv.kernel_size != (k, k) or k % 2 == 0 or conv.stride != (1, 1) or conv.dilation != (1, 1)
            or conv.groups != 1 or conv.padding != (k // 2, k // 2) or conv.padding_mode != "zeros"):
        raise ValueError(f"only odd square stride-1 'same' convolutions can be rewritten, got {conv}")
    return k


class TapSumConv2d(nn.Module):
    """A k x k convolution computed as one matrix product to k*k tap maps per output channel and
    a shifted sum of the tap maps (for few output channels). The sum is accumulated in float32.

    Shapes: (N, C_in, H, W) -> (N, C_out, H, W) float32.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.kernel = _check_same_padding(conv)
        self.out_channels = conv.out_channels
        # (C_out * k * k, C_in): row (o, a, b) holds tap (a, b) of output channel o
        weight = conv.weight.detach().permute(0, 2, 3, 1).reshape(-1, conv.in_channels)
        self.weight = nn.Parameter(weight.contiguous())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        k = self.kernel
        taps = torch.matmul(self.weight.to(x.dtype), x.flatten(2))  # (N, O*k*k, H*W): coalesced rows per tap
        taps = taps.view(n, self.out_channels, k * k, h, w)
        out = _padded_tap_sum(taps, k) if torch.compiler.is_compiling() else _tap_sum_in_place(taps, k)
        if self.bias is not None:
            out = out + self.bias.float().view(1, -1, 1, 1)
        return out


def _padded_tap_sum(taps: torch.Tensor, k: int) -> torch.Tensor:
    """(N, O, k*k, H, W) -> (N, O, H, W) float32: out[i, j] = sum over taps (a, b) of
    taps[a*k + b, i + a - k//2, j + b - k//2] (zero outside). Written as one expression over a
    padded tensor so that ``torch.compile`` fuses it into a single kernel."""
    h, w, p = taps.shape[-2], taps.shape[-1], k // 2
    padded = F.pad(taps.float(), (p, p, p, p))
    return sum(padded[:, :, a * k + b, a : a + h, b : b + w] for a in range(k) for b in range(k))


def _tap_sum_in_place(taps: torch.Tensor, k: int) -> torch.Tensor:
    """The same sum for eager mode: each tap map is added over its valid region into one float32
    output, so no padded copy of the k*k maps is made (memory stays that of the maps)."""
    n, o, _, h, w = taps.shape
    out = torch.zeros(n, o, h, w, dtype=torch.float32, device=taps.device)
    for a in range(k):
        rows = _overlap(a - k // 2, h)
        for b in range(k):
            cols = _overlap(b - k // 2, w)
            if rows and cols:
                out[:, :, rows[0], cols[0]] += taps[:, :, a * k + b, rows[1], cols[1]]
    return out


def _overlap(shift: int, size: int) -> tuple[slice, slice] | None:
    """Output and input index ranges where ``out[i] += tap[i + shift]`` stays inside ``size``."""
    start, stop = max(0, -shift), min(size, size - shift)
    return (slice(start, stop), slice(start + shift, stop + shift)) if start < stop else None
