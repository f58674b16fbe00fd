"""SRResNet generator (Ledig et al. 2017), single channel, channel-wise PReLU, any input size."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.registry import SRNetwork, architecture
from medsr.models.tap_sum_conv import TapSumConv2d


class ResidualBlock(nn.Module):
    """conv3x3 - BN - PReLU - conv3x3 - BN, plus the identity."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@architecture("srresnet", scales=(2, 4, 8))
class SRResNet(SRNetwork):
    """The paper's SRResNet generator (Ledig et al. 2017; also SRGAN's generator), with BatchNorm.

    Args:
        scale: 2, 4 or 8 (one conv + pixel shuffle x2 + PReLU stage per factor of 2).
        blocks: residual blocks (16 in the paper).
        channels: feature width (64 in the paper).
        upsample_skip: add the bicubic upsampling of the input to the output, so the network learns
            only the residual detail (not in the paper; converges much faster, used by the demo).

    Shapes: (N, C, h, w) in [0, 1] -> (N, C, scale*h, scale*w) (not clamped; clamp when saving).
    """

    def __init__(
        self,
        scale: int = 4,
        blocks: int = 16,
        channels: int = 64,
        upsample_skip: bool = False,
    ) -> None:
        super().__init__()
        self.scale, self.upsample_skip = scale, upsample_skip
        self.skip_radius = 2 if upsample_skip else 0  # the bicubic skip reads 2 LR pixels each way
        if scale not in (2, 4, 8):
            raise ValueError(f"SRResNet scale must be 2, 4 or 8, got {scale}")
        in_channels = 1  # medical images are grayscale
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), nn.PReLU(channels))
        self.body = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.body_tail = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels))
        stages = []
        for _ in range(int(math.log2(scale))):
            stages += [
                nn.Conv2d(channels, 4 * channels, 3, padding=1),
                nn.PixelShuffle(2),
                nn.PReLU(channels),
            ]
        self.upsample = nn.Sequential(*stages)
        self.tail = TapSumConv2d(channels, in_channels, 9)  # an nn.Conv2d, computed faster (see its module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = features + self.body_tail(self.body(features))
        out = self.tail(self.upsample(features))
        if self.upsample_skip:
            out = out + F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return out

    def inference_form(self) -> nn.Module:
        """An eval-mode copy with every BatchNorm folded into the convolution before it."""
        return fold_batchnorm(copy.deepcopy(self).eval())


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every Conv2d -> BatchNorm2d pair of an eval-mode model into the convolution, in place.

    The BatchNorm is replaced by ``nn.Identity``; outputs equal the unfolded model's within float
    rounding. Only for inference (the folded model no longer normalises by batch statistics).
    """
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            for (_, first), (name, second) in zip(children, children[1:]):
                if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                    _fold(first, second)
                    setattr(module, name, nn.Identity())
    return model


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale + bn.bias
    if conv.bias is None:
        conv.bias = nn.Parameter(new_bias)
    else:
        conv.bias.copy_(new_bias)
