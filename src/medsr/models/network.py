"""``NetworkModel``: a torch network behind the ``SRModel`` interface (batched, inference mode)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from medsr.choices import PRECISIONS
from medsr.errors import MedsrError
from medsr.models.base import SRModel
from medsr.models.srresnet import fold_batchnorm


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda if available, else cpu."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def receptive_radius(module: nn.Module) -> int:
    """Receptive radius in LR pixels of a conv network with pixel-shuffle upsampling (an upper
    bound: each convolution adds (k - 1) / 2 pixels at the resolution it runs at)."""
    radius, resolution = 0.0, 1
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            radius += (layer.kernel_size[0] - 1) / 2 * layer.dilation[0] / resolution
        elif isinstance(layer, nn.PixelShuffle):
            resolution *= layer.upscale_factor
    if getattr(module, "upsample_skip", False):
        radius = max(radius, 2.0)  # the bicubic skip reads 2 LR pixels each way
    return int(np.ceil(radius))


class NetworkModel(SRModel):
    """Runs a trained network on numpy images.

    Args:
        module: the network ((N, 1, h, w) -> (N, 1, s*h, s*w)).
        name: registry name; scale: its upscaling factor.
        device: ``auto``, ``cpu`` or ``cuda``.
        fold_bn: fold BatchNorm into the convolutions (faster inference, same outputs). (An SRResNet's
            9 x 9 tail picks its fastest computation per device by itself: ``models.tap_sum_conv``.)
        source: where the weights came from (checkpoint path), for reports.
        intensity: the ``ct_window``/``percentiles`` its training data were prepared with.
        batch_size: images per forward pass in ``enhance_batch``.
        precision: ``fp32`` (default) or ``bf16`` (autocast: faster on GPUs and CPUs with AMX;
            outputs move by up to about 3e-3 of the [0, 1] range).
        compile: run the network through ``torch.compile`` (pays off for many images of one size).
        trained_on: the checkpoint's ``trained_on`` record (``data.provenance``); None: unknown.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str,
        scale: int,
        *,
        device: str = "auto",
        fold_bn: bool = True,
        source: str = "",
        batch_size: int = 8,
        kwargs: dict | None = None,
        intensity: dict | None = None,
        precision: str = "fp32",
        compile: bool = False,
        trained_on: dict | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise MedsrError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.name, self.scale, self.source, self.batch_size = name, int(scale), source, batch_size
        self.intensity = dict(intensity or {})
        self.trained_on = trained_on
        self.kwargs = dict(kwargs or {})
        self.device = pick_device(device)
        self.precision = precision
        self.receptive_radius = receptive_radius(module)
        module = copy.deepcopy(module).eval()  # folding works in place; the caller's module stays as it was
        if fold_bn:
            module = fold_batchnorm(module)
        self.module = module.to(self.device).to(memory_format=torch.channels_last)  # faster on GPUs and CPUs
        self.network = torch.compile(self.module) if compile else self.module

    @torch.inference_mode()
    def enhance_batch(self, lq: np.ndarray) -> np.ndarray:
        lq = np.asarray(lq, dtype=np.float32)
        if lq.ndim != 4 or lq.shape[1] != 1:
            raise ValueError(f"expected (N, 1, h, w), got shape {lq.shape}")
        outputs = []
        for start in range(0, lq.shape[0], self.batch_size):
            batch = torch.from_numpy(lq[start : start + self.batch_size]).to(self.device)
            batch = batch.to(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                sr = self.network(batch)
            outputs.append(sr.float().clamp_(0.0, 1.0).cpu().numpy())
        return np.concatenate(outputs)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "source": self.source,
            "kwargs": self.kwargs,
            "device": str(self.device),
            "precision": self.precision,
        }
