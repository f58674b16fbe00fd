"""Large-kernel convolutions with one image channel, rewritten as matrix products for GPUs.

SRResNet's first and last layers are 9 x 9 convolutions between the single image channel and 64
feature channels. On a GPU these shapes map badly onto tensor cores (one input or output channel
leaves the matrix unit mostly idle), and the last one runs at 4x the resolution of the rest of the
network. Both are rewritten here as one dense matrix product plus a cheap gather, computing the
same function:

- ``PatchConv2d`` (few input channels -> many): gather the k*k shifted copies of the input
  (im2col; with one input channel that is 81 values per pixel), then one (pixels x 81) @ (81 x C)
  product whose result is already channels-last.
- ``TapSumConv2d`` (many input channels -> few): one (k*k*O x C) @ (C x pixels) product gives every
  tap's contribution at every pixel ("tap maps"), then each output pixel sums its k*k shifted tap
  maps. Under ``torch.compile`` the shifted sum is one fused kernel.

Both accept only stride 1, dilation 1, one group and zero "same" padding, as SRResNet uses; their
outputs equal the original convolution's up to float rounding (tested). Used by
``medsr.models.srresnet.for_gpu_inference``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ALIGN = 8  # pad the gathered taps to a multiple of 8 so bf16/fp16 rows are 16-byte aligned


def _check_same_padding(conv: nn.Conv2d) -> int:
    k = conv.kernel_size[0]
    if (conv.kernel_size != (k, k) or k % 2 == 0 or conv.stride != (1, 1) or conv.dilation != (1, 1)
            or conv.groups != 1 or conv.padding != (k // 2, k // 2) or conv.padding_mode != "zeros"):
        raise ValueError(f"only odd square stride-1 'same' convolutions can be rewritten, got {conv}")
    return k


class PatchConv2d(nn.Module):
    """A k x k convolution computed as im2col + one matrix product (for few input channels).

    Shapes: (N, C_in, H, W) -> (N, C_out, H, W), channels-last in memory.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.kernel = _check_same_padding(conv)
        out_channels, in_channels = conv.out_channels, conv.in_channels
        taps = in_channels * self.kernel**2
        self.padded_taps = -(-taps // _ALIGN) * _ALIGN
        weight = conv.weight.detach().reshape(out_channels, taps).t()  # (taps, C_out), order (c, a, b)
        self.weight = nn.Parameter(F.pad(weight, (0, 0, 0, self.padded_taps - taps)).contiguous())
        self.bias = nn.Parameter(conv.bias.detach().clone()) if conv.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        k, p = self.kernel, self.kernel // 2
        padded = F.pad(x, (p, p, p, p))
        columns = [padded[:, ci, a : a + h, b : b + w] for ci in range(c) for a in range(k) for b in range(k)]
        patches = torch.stack(columns, dim=-1)  # (N, H, W, taps)
        patches = F.pad(patches, (0, self.padded_taps - patches.shape[-1]))
        out = torch.matmul(patches, self.weight.to(patches.dtype))  # autocast may lower both further
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.permute(0, 3, 1, 2)  # (N, C_out, H, W), channels-last strides


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
        n, c, h, w = x.shape
        k, p = self.kernel, self.kernel // 2
        taps = torch.matmul(self.weight.to(x.dtype), x.flatten(2))  # (N, O*k*k, H*W): coalesced rows per tap
        taps = F.pad(taps.view(n, self.out_channels, k * k, h, w).float(), (p, p, p, p))
        out = sum(taps[:, :, a * k + b, a : a + h, b : b + w] for a in range(k) for b in range(k))
        if self.bias is not None:
            out = out + self.bias.float().view(1, -1, 1, 1)
        return out
