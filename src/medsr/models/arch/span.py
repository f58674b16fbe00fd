"""SPAN: the swift parameter-free attention network (Wan et al., NTIRE 2024 efficient SR winner),
after the official ``span_arch.py`` (hongyuanyu/SPAN), with three differences: one image channel;
the input is used as it is, in [0, 1] (the official network feeds ``(x - RGB mean) * 255``, so its
zero padding is mean grey, here black); an optional global interpolation skip (``skip``).

Training uses re-parameterisable ``Conv3XC`` blocks (a 1x1 -> 3x3 -> 1x1 chain plus a 1x1 skip,
all linear); ``inference_form()`` merges each into one plain 3x3 convolution, which computes the
same function. Each block's attention is parameter-free: ``(y + x) * (sigmoid(y) - 0.5)``.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.registry import SRNetwork, architecture


class Conv3XC(nn.Module):
    """A 3x3 convolution (zero padding) trained as ``1x1 -> 3x3 (valid) -> 1x1`` on the zero-padded
    input, plus a 1x1 skip; ``gain`` widens the inner chain. ``merged()`` is the equal 3x3 conv."""

    def __init__(self, c_in: int, c_out: int, gain: int = 2) -> None:
        super().__init__()
        self.skip = nn.Conv2d(c_in, c_out, 1)
        self.chain = nn.Sequential(
            nn.Conv2d(c_in, c_in * gain, 1),
            nn.Conv2d(c_in * gain, c_out * gain, 3),
            nn.Conv2d(c_out * gain, c_out, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the padding is applied before the first 1x1 conv, so padded positions carry its bias,
        # exactly as the merged conv's bias assumes (outputs agree at the borders too)
        return self.chain(F.pad(x, (1, 1, 1, 1))) + self.skip(x)

    @torch.no_grad()
    def merged(self) -> nn.Conv2d:
        """The single 3x3 convolution equal to this block (float64 arithmetic, stored as float32)."""
        first, middle, last = self.chain
        w1, b1 = first.weight.double()[:, :, 0, 0], first.bias.double()  # (g*ci, ci), (g*ci,)
        w2, b2 = middle.weight.double(), middle.bias.double()  # (g*co, g*ci, 3, 3)
        w3, b3 = last.weight.double()[:, :, 0, 0], last.bias.double()  # (co, g*co)
        weight = torch.einsum("om,mnyx,ni->oiyx", w3, w2, w1)
        bias = w3 @ (w2.sum((2, 3)) @ b1 + b2) + b3
        weight[:, :, 1, 1] += self.skip.weight.double()[:, :, 0, 0]
        bias = bias + self.skip.bias.double()
        conv = nn.Conv2d(weight.shape[1], weight.shape[0], 3, padding=1)
        conv.weight.copy_(weight.float())
        conv.bias.copy_(bias.float())
        return conv.to(self.skip.weight.device)


class SPAB(nn.Module):
    """Three Conv3XC with SiLU between them, then the parameter-free attention and the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1, self.c2, self.c3 = (Conv3XC(channels, channels) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first = self.c1(x)
        out = self.c3(F.silu(self.c2(F.silu(first))))
        return (out + x) * (torch.sigmoid(out) - 0.5), first


@architecture("span", scales=(2, 3, 4))
class SPAN(SRNetwork):
    """SPAN (NTIRE 2024 efficient SR winner): re-parameterisable blocks, parameter-free attention.

    Args:
        scale: 2, 3 or 4 (one 3x3 conv + pixel shuffle by the factor).
        channels: feature width (48: the official code's default).
        blocks: SPAB blocks (6).
        skip: add the ``bilinear`` or ``bicubic`` upsampling of the input to the output (``none``:
            as published; a skip lets the network learn only the missing detail, and its last
            convolution then starts at a tenth of its default scale, so training starts close to
            the interpolation).

    Shapes: (N, 1, h, w) in [0, 1] -> (N, 1, scale*h, scale*w) (not clamped).
    """

    def __init__(
        self,
        scale: int = 4,
        channels: int = 48,
        blocks: int = 6,
        skip: Literal["none", "bilinear", "bicubic"] = "none",
    ) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"SPAN scale must be 2, 3 or 4, got {scale}")
        if channels < 1 or blocks < 1:
            raise ValueError(f"channels and blocks must be positive, got {channels}, {blocks}")
        self.scale, self.skip = scale, skip
        self.skip_radius = {"none": 0, "bilinear": 1, "bicubic": 2}[skip]
        self.head = Conv3XC(1, channels)
        self.blocks = nn.ModuleList(SPAB(channels) for _ in range(blocks))
        self.body_tail = Conv3XC(channels, channels)
        self.fuse = nn.Conv2d(4 * channels, channels, 1)
        self.upsample = nn.Sequential(
            nn.Conv2d(channels, scale * scale, 3, padding=1), nn.PixelShuffle(scale)
        )
        if skip != "none":  # start close to the interpolation, as BasicSR's scaled init does for MSRResNet
            with torch.no_grad():
                self.upsample[0].weight.mul_(0.1)
                self.upsample[0].bias.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, h, w) -> the fused features (N, channels, h, w) that ``upsample`` turns into pixels."""
        features = self.head(x)
        out, first_out, last_inner = features, None, None
        for block in self.blocks:
            out, last_inner = block(out)
            first_out = out if first_out is None else first_out
        return self.fuse(torch.cat([features, self.body_tail(out), first_out, last_inner], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.upsample(self.features(x))
        if self.skip != "none":
            out = out + F.interpolate(x, scale_factor=self.scale, mode=self.skip, align_corners=False)
        return out

    def inference_form(self) -> nn.Module:
        """An eval-mode copy with every Conv3XC merged into one 3x3 convolution."""
        module = copy.deepcopy(self).eval()
        for parent in list(module.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, Conv3XC):
                    setattr(parent, name, child.merged())
        return module
