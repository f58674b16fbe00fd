"""``NetworkModel``: a torch network behind the ``SRModel`` interface (batched, inference mode)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from medsr.choices import PRECISIONS
from medsr.errors import MedsrError
from medsr.models.base import SRModel
from medsr.models.registry import SRNetwork, conv_radius


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda if available, else cpu; ``cpu``, ``cuda`` and ``cuda:N`` as asked.

    Raises:
        MedsrError: not a device name, or a CUDA device this PyTorch cannot use.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise MedsrError(f"device {device!r}: not a device (auto, cpu, cuda or cuda:N)") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise MedsrError(
                f"device {device!r}: no CUDA GPU is available to this PyTorch ({torch.__version__})"
            )
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise MedsrError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices")
    elif chosen.type != "cpu":
        raise MedsrError(f"device {device!r}: medsr runs on cpu or cuda")
    return chosen


class NetworkModel(SRModel):
    """Runs a trained network on numpy images.

    Args:
        module: a registered network (``models.registry.SRNetwork``: (N, 1, h, w) -> (N, 1, s*h, s*w)).
        name: registry name; scale: its upscaling factor.
        device: ``auto``, ``cpu`` or ``cuda``.
        inference_form: run the network's inference form (BatchNorm folded, re-parameterised
            branches merged: faster, same outputs within float rounding). (An SRResNet's 9 x 9 tail
            picks its fastest computation per device by itself: ``models.tap_sum_conv``.)
        source: where the weights came from (checkpoint path), for reports.
        intensity: the ``ct_window``/``percentiles`` its training data were prepared with.
        batch_size: images per forward pass in ``enhance_batch``.
        precision: ``fp32`` (default) or ``bf16`` (autocast: faster on GPUs and CPUs with AMX;
            outputs move by up to about 3e-3 of the [0, 1] range).
        compile: run the network through ``torch.compile`` (pays off for many images of one size).
        trained_on: the checkpoint's ``trained_on`` record (``data.provenance``); None: unknown.
        architecture: the registry name of the network (default: ``name``).
        version: the version of a built-in model's weights (empty for checkpoints).
    """

    def __init__(
        self,
        module: SRNetwork,
        name: str,
        scale: int,
        *,
        device: str = "auto",
        inference_form: bool = True,
        source: str = "",
        batch_size: int = 8,
        kwargs: dict | None = None,
        intensity: dict | None = None,
        precision: str = "fp32",
        compile: bool = False,
        trained_on: dict | None = None,
        architecture: str = "",
        version: str = "",
    ) -> None:
        if precision not in PRECISIONS:
            raise MedsrError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.name, self.scale, self.source, self.batch_size = name, int(scale), source, batch_size
        self.architecture, self.version = architecture or name, version
        self.intensity = dict(intensity or {})
        self.trained_on = trained_on
        self.kwargs = dict(kwargs or {})
        self.device = pick_device(device)
        self.precision = precision
        # both forms are copies: the caller's module stays as it was
        module = module.inference_form() if inference_form else copy.deepcopy(module).eval()
        self.receptive_radius = conv_radius(module, getattr(module, "skip_radius", 0))
        self.module = module.to(self.device).to(memory_format=torch.channels_last)  # faster on GPUs and CPUs
        self.network = torch.compile(self.module) if compile else self.module

    @torch.inference_mode()
    def enhance_batch(self, lq: np.ndarray) -> np.ndarray:
        outputs = []
        for chunk in self.chunks(lq, self.batch_size):
            batch = torch.from_numpy(chunk).to(self.device).to(memory_format=torch.channels_last)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                sr = self.network(batch)
            outputs.append(sr.float().clamp_(0.0, 1.0).cpu().numpy())
        return np.concatenate(outputs)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "source": self.source,
            "architecture": self.architecture,
            "version": self.version,
            "kwargs": self.kwargs,
            "device": str(self.device),
            "precision": self.precision,
        }
