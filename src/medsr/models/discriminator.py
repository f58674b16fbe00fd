"""SRGAN discriminator: eight 3x3 convolutions (64 -> 512 channels, stride 1/2 alternating),
BatchNorm (not after the first), LeakyReLU 0.2, then a classifier head that accepts any patch size."""

from __future__ import annotations

import torch
from torch import nn

VARIANTS = ("paper", "ledig")


class Discriminator(nn.Module):
    """Real/fake classifier for HR patches.

    Args:
        variant: ``paper`` (global average pooling, then one dense unit: the paper dropped the
            1024-unit layer for memory) or ``ledig`` (adaptive pooling to 6x6, dense 1024,
            LeakyReLU, dense 1, as Ledig et al. with 96x96 patches).
        in_channels: image channels (1).
        width: channels of the first layer (64).

    Shapes: (N, C, H, W) -> (N,) logits (use ``BCEWithLogitsLoss``; sigmoid gives probabilities).
    """

    def __init__(self, variant: str = "paper", in_channels: int = 1, width: int = 64) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"discriminator variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        layers: list[nn.Module] = []
        channels_in = in_channels
        plan = [
            (width, 1),
            (width, 2),
            (2 * width, 1),
            (2 * width, 2),
            (4 * width, 1),
            (4 * width, 2),
            (8 * width, 1),
            (8 * width, 2),
        ]
        for index, (channels, stride) in enumerate(plan):
            layers.append(nn.Conv2d(channels_in, channels, 3, stride=stride, padding=1))
            if index > 0:
                layers.append(nn.BatchNorm2d(channels))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            channels_in = channels
        self.features = nn.Sequential(*layers)
        if variant == "paper":
            self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels_in, 1))
        else:
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(6),
                nn.Flatten(),
                nn.Linear(channels_in * 36, 1024),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Linear(1024, 1),
            )
        self.variant = variant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)).squeeze(1)
