"""MSRResNet: BasicSR's SRResNet without BatchNorm, the field's reference recipe network
(Wang et al., ESRGAN workshop 2018; ``basicsr/archs/srresnet_arch.py``), one image channel.

The same layers and initialisation as BasicSR's; the upsampling convolutions are kept in a list
(``upconvs.0``, ``upconvs.1``), so BasicSR's RGB weight files (``upconv1``, ``upconv2``) do not load
as they are (they are for three channels anyway)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.registry import SRNetwork, architecture


@torch.no_grad()
def scaled_kaiming_(modules: list[nn.Module], scale: float = 0.1) -> None:
    """BasicSR's ``default_init_weights``: Kaiming-normal weights times ``scale``, zero biases, so
    that each residual branch starts close to the identity."""
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight)
                layer.weight.mul_(scale)
                if layer.bias is not None:
                    layer.bias.zero_()


class ResidualBlockNoBN(nn.Module):
    """x + conv3x3(ReLU(conv3x3(x))), scaled-Kaiming initialised."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        scaled_kaiming_([self.conv1, self.conv2])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


@architecture("msrresnet", scales=(2, 3, 4))
class MSRResNet(SRNetwork):
    """BasicSR's MSRResNet: SRResNet without BatchNorm, LeakyReLU 0.1, a bilinear global skip.

    Args:
        scale: 2, 3 (one conv + pixel shuffle by the factor) or 4 (two x2 stages).
        blocks: residual blocks (16 in BasicSR's recipe).
        channels: feature width (64).

    Shapes: (N, 1, h, w) in [0, 1] -> (N, 1, scale*h, scale*w) (not clamped).
    """

    skip_radius = 1  # bilinear reads one LR pixel each way

    def __init__(self, scale: int = 4, blocks: int = 16, channels: int = 64) -> None:
        super().__init__()
        if scale not in (2, 3, 4):
            raise ValueError(f"MSRResNet scale must be 2, 3 or 4, got {scale}")
        self.scale = scale
        self.conv_first = nn.Conv2d(1, channels, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlockNoBN(channels) for _ in range(blocks)])
        factors = [2, 2] if scale == 4 else [scale]
        self.upconvs = nn.ModuleList(nn.Conv2d(channels, channels * f * f, 3, padding=1) for f in factors)
        self.shuffles = nn.ModuleList(nn.PixelShuffle(f) for f in factors)
        self.conv_hr = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv_last = nn.Conv2d(channels, 1, 3, padding=1)
        scaled_kaiming_([self.conv_first, *self.upconvs, self.conv_hr, self.conv_last])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = F.leaky_relu(self.conv_first(x), 0.1)
        out = self.body(features)
        for upconv, shuffle in zip(self.upconvs, self.shuffles):
            out = F.leaky_relu(shuffle(upconv(out)), 0.1)
        out = self.conv_last(F.leaky_relu(self.conv_hr(out), 0.1))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
