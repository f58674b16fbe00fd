"""How far an upsampled LR image lies from its HR image: the check that a degradation samples the
pixel grid the upsamplers assume (LR pixel k at HR position (k + 0.5) * scale - 0.5).

Used by the degradation tests and ``benchmarks/degradation_alignment.py``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _correlation_shift(hr: np.ndarray, up: np.ndarray, scale: int) -> np.ndarray:
    """One phase-correlation estimate (dy, dx), HR pixels, of how far ``up``'s content lies from ``hr``'s.

    Whole (H, W) images, mean removed, low-passed by a Gaussian of 0.25 / scale cycles/pixel (the
    band the LR grid carries), then ``phase_cross_correlation`` to 1/100 pixel. No window: a window
    does not commute with the degradations' blur and biases the wide-kernel cases (x8) by up to
    0.1 pixel; medical slices' borders are mostly dark background, so the FFT's wrap-around adds no edge."""
    from skimage.registration import phase_cross_correlation

    fy, fx = np.fft.fftfreq(hr.shape[0])[:, None], np.fft.fftfreq(hr.shape[1])[None, :]
    lowpass = np.exp(-0.5 * (fy**2 + fx**2) / (0.25 / scale) ** 2)
    spectra = [
        np.fft.fft2(image - image.mean()) * lowpass
        for image in (hr.astype(np.float64), up.astype(np.float64))
    ]
    shift, _, _ = phase_cross_correlation(*spectra, upsample_factor=100, space="fourier", normalization=None)
    return -np.asarray(shift, dtype=np.float64)


def grid_shift(hr: np.ndarray, up: np.ndarray, scale: int, *, rounds: int = 4) -> np.ndarray:
    """Sub-pixel displacement (dy, dx), HR pixels, of ``up`` (an LR image upsampled to ``hr``'s
    (H, W) shape) against ``hr``; both real arrays on one intensity scale.

    Positive: ``up``'s content lies further down / right. The correlation peak of a large shift
    is slightly off, so ``up`` is moved back by the estimate so far (cubic spline) and the residual
    measured again, until it is at most 0.01 pixel (the resolution)."""
    total = np.zeros(2)
    for _ in range(rounds):
        moved = ndimage.shift(up.astype(np.float64), -total, order=3, mode="nearest") if total.any() else up
        step = _correlation_shift(hr, moved, scale)
        total += step
        if np.abs(step).max() <= 0.011:  # one step of the 1/100-pixel grid
            break
    return total
