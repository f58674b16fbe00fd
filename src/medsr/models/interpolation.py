"""Interpolation baselines (OpenCV, as the paper): nearest, bilinear, bicubic, Lanczos."""

from __future__ import annotations

import cv2
import numpy as np

from medsr.choices import INTERPOLATIONS
from medsr.models.base import SRModel

__all__ = [
    "INTERPOLATIONS",
    "InterpolationModel",
]  # INTERPOLATIONS: re-exported (evaluate imports it from here)

_FLAGS = {  # one per name of INTERPOLATIONS (medsr.choices), in its order
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "lanczos": cv2.INTER_LANCZOS4,
}


class InterpolationModel(SRModel):
    """Upsampling by ``cv2.resize`` with one interpolation kernel; the output is clipped to [0, 1]
    (bicubic and Lanczos overshoot at edges)."""

    def __init__(self, method: str, scale: int = 4) -> None:
        if method not in _FLAGS:
            raise ValueError(f"unknown interpolation {method!r}; choose from {', '.join(_FLAGS)}")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.name = method
        self.scale = int(scale)
        self._flag = _FLAGS[method]

    def enhance_batch(self, lq: np.ndarray) -> np.ndarray:
        lq = np.asarray(lq, dtype=np.float32)
        if lq.ndim != 4 or lq.shape[1] != 1:
            raise ValueError(f"expected (N, 1, h, w), got shape {lq.shape}")
        n, _, h, w = lq.shape
        out = np.empty((n, 1, h * self.scale, w * self.scale), dtype=np.float32)
        for index in range(n):
            resized = cv2.resize(lq[index, 0], (w * self.scale, h * self.scale), interpolation=self._flag)
            np.clip(resized, 0.0, 1.0, out=out[index, 0])
        return out

    def describe(self) -> dict:
        return {**super().describe(), "library": f"OpenCV {cv2.__version__} cv2.resize"}
