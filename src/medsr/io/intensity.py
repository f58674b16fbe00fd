"""Choosing the intensity mapping (physical values -> [0, 1]) for a series.

CT is windowed in HU, by default over the full 12-bit CT range -1024..3071 HU that scanners store
(HU are calibrated, so one fixed window keeps the same tissue at the same value in every series;
values inside the window map back exactly, padding below -1024 and metal above 3071 are clipped).
MR and other modalities are percentile-normalised per series (default 0..100, i.e. min..max,
lossless); 8/16-bit PNG/TIFF use their type's full range. MONOCHROME1 images are inverted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medsr.io.types import IntensityMapping, SliceMeta

#: The 12-bit CT range in HU (stored 0..4095 with intercept -1024).
CT_FULL_RANGE = (-1024.0, 3071.0)


@dataclass(frozen=True)
class IntensityPolicy:
    """How to choose lo/hi.

    Attributes:
        ct_window: ``(lo, hi)`` in HU (default ``(-1024, 3071)``; brain ``(0, 80)``), ``"range"``
            (series min..max, lossless) or ``"stored"`` (all values the file's bit depth can hold).
        percentiles: (low, high) percentiles in [0, 100] for non-CT series.
    """

    ct_window: str | tuple[float, float] = CT_FULL_RANGE
    percentiles: tuple[float, float] = (0.0, 100.0)

    def __post_init__(self) -> None:
        low, high = self.percentiles
        if not 0.0 <= low < high <= 100.0:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.percentiles}")
        if isinstance(self.ct_window, str):
            if self.ct_window not in ("range", "stored"):
                raise ValueError(f"ct window must be 'range', 'stored' or LO,HI; got {self.ct_window!r}")
        elif not self.ct_window[0] < self.ct_window[1]:
            raise ValueError(f"ct window needs LO < HI, got {self.ct_window}")


def value_samples(pixels: np.ndarray, count: int = 1024) -> np.ndarray:
    """About ``count`` evenly strided values of an image plus its min and max (float32): enough
    to fit a series' mapping without holding the series (min/max stay exact)."""
    flat = np.asarray(pixels).ravel()
    step = max(1, flat.size // count)
    return np.concatenate([flat[::step], [flat.min(), flat.max()]]).astype(np.float32)


def fit_mapping(
    meta: SliceMeta, samples: np.ndarray, policy: IntensityPolicy = IntensityPolicy()
) -> IntensityMapping:
    """Intensity mapping for a series.

    Args:
        meta: metadata of any slice of the series (modality, format, photometric, fixed range).
        samples: finite physical values of the series (all pixels, or a subsample; with the
            default 0/100 percentiles only min and max matter, so including each slice's
            min and max makes the mapping exact).
        policy: window/percentile settings.
    """
    invert = meta.photometric == "MONOCHROME1"
    samples = np.asarray(samples, dtype=np.float64).ravel()
    if meta.modality == "CT":
        if isinstance(policy.ct_window, tuple):
            lo, hi = policy.ct_window
            return IntensityMapping(float(lo), float(hi), "window", invert, f"{lo:g},{hi:g}")
        if policy.ct_window == "stored" and meta.fixed_range is not None:
            return _safe("window", *meta.fixed_range, invert, "stored")
        return _safe("range", float(samples.min()), float(samples.max()), invert, "min,max")
    if meta.format == "raster" and meta.fixed_range is not None:
        return _safe("dtype", *meta.fixed_range, invert, meta.stored_dtype)
    low, high = policy.percentiles
    if (low, high) == (0.0, 100.0):
        lo, hi = float(samples.min()), float(samples.max())
    else:
        lo, hi = (float(v) for v in np.percentile(samples, [low, high]))
    return _safe("percentile", lo, hi, invert, f"p{low:g}-{high:g}")


def _safe(method: str, lo: float, hi: float, invert: bool, params: str) -> IntensityMapping:
    if hi <= lo:  # a constant series: any positive width maps it to 0
        hi = lo + 1.0
    return IntensityMapping(lo, hi, method, invert, params)


def policy_from_dict(settings: dict) -> IntensityPolicy:
    """An ``IntensityPolicy`` from prepare.json-style settings (``ct_window``, ``percentiles``)."""
    window = settings.get("ct_window", CT_FULL_RANGE)
    window = tuple(float(v) for v in window) if isinstance(window, (list, tuple)) else window
    return IntensityPolicy(
        ct_window=window, percentiles=tuple(float(v) for v in settings.get("percentiles", (0.0, 100.0)))
    )
