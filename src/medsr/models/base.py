"""The interface every super-resolution method offers, interpolation baselines and networks alike."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np


class SRModel(ABC):
    """A super-resolution method with a fixed integer scale.

    Attributes:
        name: registry name (``bicubic``, ``srresnet``, ...).
        scale: upscaling factor (2, 4 or 8).
    """

    name: str = ""
    scale: int = 4
    #: LR pixels beyond which an input pixel no longer affects an output pixel (for tiling).
    receptive_radius: int = 4
    #: Intensity settings (``ct_window``, ``percentiles``) the model expects; empty: the defaults.
    intensity: Mapping[str, object] = MappingProxyType({})
    #: What the model learnt from (``data.provenance``): empty for methods that learnt from no data
    #: (interpolation, untrained networks), None when unknown (a checkpoint without the record).
    trained_on: Mapping[str, object] | None = MappingProxyType({})
    #: The file the weights were read from (checkpoint, export or built-in weights); empty for baselines.
    weights_path: str = ""
    #: SHA-256 of the weights as loaded (``checkpoint.weights_digest`` of the tensors; of the file's
    #: bytes for ONNX); empty for baselines. What ``medsr enhance`` records to know a model again.
    weights_sha256: str = ""

    @abstractmethod
    def enhance_batch(self, lq: np.ndarray) -> np.ndarray:
        """float32 (N, 1, h, w) in [0, 1] -> float32 (N, 1, scale*h, scale*w) in [0, 1]."""

    def enhance(self, lq: np.ndarray) -> np.ndarray:
        """One image: float (h, w) in [0, 1] -> float32 (scale*h, scale*w) in [0, 1]."""
        lq = np.asarray(lq, dtype=np.float32)
        if lq.ndim != 2:
            raise ValueError(f"expected a 2-D image, got shape {lq.shape}")
        return self.enhance_batch(lq[np.newaxis, np.newaxis])[0, 0]

    def chunks(self, lq: np.ndarray, size: int):
        """Check a batch and yield it in contiguous float32 chunks of ``size`` images.

        Args:
            lq: (N, 1, h, w) in [0, 1].

        Raises:
            ValueError: another shape.
        """
        lq = np.asarray(lq, dtype=np.float32)
        if lq.ndim != 4 or lq.shape[1] != 1:
            raise ValueError(f"expected (N, 1, h, w), got shape {lq.shape}")
        for start in range(0, lq.shape[0], size):
            yield np.ascontiguousarray(lq[start : start + size])

    @property
    def label(self) -> str:
        """The method's name with its weights' version where it has one (``medsr-x4 version 1``),
        as DICOM derivation fields and reports name it."""
        version = getattr(self, "version", "")
        return f"{self.name} version {version}" if version else self.name

    def describe(self) -> dict:
        """What the method is, for reports (name, scale and, for networks, the checkpoint)."""
        return {"name": self.name, "scale": self.scale, "kind": type(self).__name__}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, scale={self.scale})"
