"""Losses: pixel (MSE/L1), the VGG19 perceptual (content) loss, and the adversarial losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.vgg import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD, feature_index, load_vgg_features


def pixel_loss(kind: str):
    """``mse`` (the paper) or ``l1``: a function (sr, hr) -> scalar."""
    if kind == "mse":
        return F.mse_loss
    if kind == "l1":
        return F.l1_loss
    raise ValueError(f"pixel loss must be mse or l1, got {kind!r}")


class PerceptualLoss(nn.Module):
    """MSE between VGG19 features phi_{i,j} of SR and HR (Ledig et al.: i=5, j=4; the paper's
    text says i=5, j=2). Grayscale (N, 1, H, W) in [0, 1] is replicated to 3 channels here and
    normalised the way the loaded weights expect (ImageNet mean/std, or Caffe BGR 0-255 minus
    mean). No arbitrary rescaling of the loss."""

    def __init__(self, layer: tuple[int, int] = (5, 4), weights: str = "auto") -> None:
        super().__init__()
        self.layer = layer
        self.features, self.weights = load_vgg_features(weights, until=feature_index(*layer))
        if self.weights.normalisation == "caffe":
            mean = torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
            scale = torch.full((1, 3, 1, 1), 255.0)
        else:
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            scale = 1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            mean = mean * scale  # (x - m) / s == x * (1/s) - m/s
        self.register_buffer("scale", scale, persistent=False)
        self.register_buffer("offset", mean, persistent=False)

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        self.features.eval()  # the VGG is frozen and always in eval mode
        return self

    def extract(self, image: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) in [0, 1] -> VGG features (N, C, H', W')."""
        rgb = image.expand(-1, 3, -1, -1)
        return self.features(rgb * self.scale - self.offset)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.extract(hr)
        return F.mse_loss(self.extract(sr), target)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Standard GAN loss for D: -log D(real) - log(1 - D(fake)), from logits."""
    return F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits)
    )


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(G(z)) (Ledig et al.), from logits."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
