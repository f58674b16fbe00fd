"""Weight-free full-reference metrics beyond PSNR and SSIM, for one-channel images.

Conventions as ``metrics.classic``: numpy (H, W) or torch (N, 1, H, W) / (H, W) in
[0, data_range] (values outside raise), ``crop_border`` pixels removed first; one float per image
(a float64 torch tensor (N,) for a torch batch). Computed in float64.

* ``ms_ssim``: multi-scale SSIM (Wang, Simoncelli and Bovik 2003): five scales with weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), the SSIM window of ``classic`` (Gaussian 11 x 11,
  sigma 1.5, valid positions), 2 x 2 average pooling between scales (odd sizes padded by
  replication at the top and left), contrast-structure terms clipped at 0; images of at least
  161 x 161. Higher is better, 1 for identical images.
* ``haarpsi``: Haar wavelet-based perceptual similarity (Reisenhofer et al. 2018) for grey images:
  values scaled to 0..255, 2 x 2 average subsampling, Haar filters at three scales, C = 30,
  alpha = 4.2. Higher is better, in [0, 1].
* ``gmsd``: gradient magnitude similarity deviation (Xue et al. 2014): 2 x 2 average subsampling,
  Prewitt gradients (zero padding), T = 170 / 255^2 on the [0, 1] scale. Lower is better, 0 for
  identical images.
  (These three follow the definitions of ``piq`` 0.8, which the tests compare against.)
* ``hfen``: high-frequency error norm (Ravishankar and Bresler 2011), the MR reconstruction
  metric: ``||LoG(sr) - LoG(gt)||_2 / ||LoG(gt)||_2`` with MATLAB's ``fspecial('log', 15, 1.5)``
  (zero-sum) and symmetric boundaries. Lower is better, 0 for identical images; ``mask`` restricts
  both norms to the masked pixels.
* ``nrmse``: ``||sr - gt||_2 / ||gt||_2`` (scikit-image's ``normalized_root_mse`` with
  ``normalization="euclidean"``). Lower is better; ``mask`` as for ``hfen``.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from medsr.metrics.classic import (
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    _check,
    _crop,
    _is_torch,
    _torch_metric,
)


class ImageTooSmall(ValueError):
    """The image is smaller than the metric's window (MS-SSIM: 161 x 161; HaarPSI: 16 x 16)."""


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_MIN_SIZE = (SSIM_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1
HAARPSI_C, HAARPSI_ALPHA, HAARPSI_SCALES = 30.0, 4.2, 3
GMSD_T = 170 / 255.0**2
HFEN_SIZE, HFEN_SIGMA = 15, 1.5


def _per_image(function: Callable[..., float]) -> Callable:
    """Wrap ``function(sr, gt, data_range, mask) -> float`` on float64 (H, W) arrays with the
    conventions of the module docstring (checks, crop, torch batches)."""

    def metric(sr, gt, *, data_range: float = 1.0, crop_border: int = 0, mask: np.ndarray | None = None):
        if _is_torch(sr) or _is_torch(gt):
            return _torch_metric(metric, sr, gt, data_range=data_range, crop_border=crop_border, mask=mask)
        sr, gt = np.asarray(sr, np.float64), np.asarray(gt, np.float64)
        _check(sr, gt, data_range)
        sr, gt = _crop(sr, crop_border), _crop(gt, crop_border)
        mask = _crop(np.asarray(mask, bool), crop_border) if mask is not None else None
        return float(function(sr, gt, data_range, mask))

    metric.__name__, metric.__doc__ = function.__name__.lstrip("_"), function.__doc__
    return metric


def _pool2(image: np.ndarray, *, pad_before: bool, mode: str) -> np.ndarray:
    """2 x 2 average pooling; an odd side is first padded by one row/column (before: at the top and
    left, by replication; after: at the bottom and right, with zeros), as ``piq`` does."""
    odd = max(image.shape[0] % 2, image.shape[1] % 2)
    if odd:
        width = ((odd, 0), (odd, 0)) if pad_before else ((0, odd), (0, odd))
        image = np.pad(image, width, mode=mode)
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    return image[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def _gaussian_window() -> np.ndarray:
    taps = cv2.getGaussianKernel(SSIM_WINDOW, SSIM_SIGMA, cv2.CV_64F)
    return taps @ taps.T


def _valid(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlation with ``kernel`` at the positions where it fits whole."""
    from scipy.signal import correlate2d

    return correlate2d(image, kernel, mode="valid")


def _ssim_and_cs(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Mean SSIM and mean contrast-structure term of two [0, 1] images (valid positions)."""
    window = _gaussian_window()
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    mu_x, mu_y = _valid(x, window), _valid(y, window)
    var_x = _valid(x * x, window) - mu_x**2
    var_y = _valid(y * y, window) - mu_y**2
    cov = _valid(x * y, window) - mu_x * mu_y
    cs = (2 * cov + c2) / (var_x + var_y + c2)
    return float(((2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs).mean()), float(cs.mean())


def _ms_ssim(sr: np.ndarray, gt: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
    """Multi-scale SSIM (see the module docstring); images of at least 161 x 161."""
    if min(sr.shape) < MS_SSIM_MIN_SIZE:
        raise ImageTooSmall(
            f"MS-SSIM needs images of at least {MS_SSIM_MIN_SIZE}x{MS_SSIM_MIN_SIZE}, got {sr.shape}"
        )
    x, y = sr / data_range, gt / data_range
    terms = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        if level:
            x, y = (_pool2(i, pad_before=True, mode="edge") for i in (x, y))
        ssim_value, cs = _ssim_and_cs(x, y)
        terms.append(cs if level < len(MS_SSIM_WEIGHTS) - 1 else ssim_value)
    return float(np.prod([max(t, 0.0) ** w for t, w in zip(terms, MS_SSIM_WEIGHTS)]))


def _haar_responses(image: np.ndarray) -> list[np.ndarray]:
    """Horizontal and vertical Haar responses at each scale, as MATLAB's conv2(..., 'same')."""
    responses = []
    for scale in range(HAARPSI_SCALES):
        size = 2 ** (scale + 1)
        kernel = np.full((size, size), 1.0 / size)
        kernel[size // 2 :] *= -1
        padded = np.pad(image, ((size // 2 - 1, size // 2), (size // 2 - 1, size // 2)))
        responses += [_valid(padded, kernel), _valid(padded, kernel.T)]
    return responses


def _haarpsi(sr: np.ndarray, gt: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
    """HaarPSI of grey images (see the module docstring); in [0, 1], higher is better."""
    if min(sr.shape) < 2 ** (HAARPSI_SCALES + 1):
        raise ImageTooSmall(f"HaarPSI needs images of at least {2 ** (HAARPSI_SCALES + 1)} pixels a side")
    x, y = (_pool2(i / data_range * 255.0, pad_before=False, mode="constant") for i in (sr, gt))
    cx, cy = _haar_responses(x), _haar_responses(y)
    weights = [np.maximum(np.abs(cx[4 + o]), np.abs(cy[4 + o])) for o in range(2)]
    similarity = [
        sum(
            (2 * np.abs(cx[o + k]) * np.abs(cy[o + k]) + HAARPSI_C)
            / (cx[o + k] ** 2 + cy[o + k] ** 2 + HAARPSI_C)
            for k in (0, 2)
        )
        / 2
        for o in range(2)
    ]
    eps = np.finfo(np.float64).eps
    sigmoid = [1 / (1 + np.exp(-HAARPSI_ALPHA * s)) for s in similarity]
    score = (sum(float((s * w).sum()) for s, w in zip(sigmoid, weights)) + eps) / (
        sum(float(w.sum()) for w in weights) + eps
    )
    return float((np.log(score / (1 - score)) / HAARPSI_ALPHA) ** 2)


def _gmsd(sr: np.ndarray, gt: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
    """GMSD (see the module docstring); 0 for identical images, lower is better."""
    prewitt = np.array([[-1.0, 0.0, 1.0]] * 3) / 3
    x, y = (_pool2(i / data_range, pad_before=False, mode="constant") for i in (sr, gt))

    def magnitude(image: np.ndarray) -> np.ndarray:
        padded = np.pad(image, 1)
        return np.sqrt(_valid(padded, prewitt) ** 2 + _valid(padded, prewitt.T) ** 2)

    gx, gy = magnitude(x), magnitude(y)
    similarity = (2 * gx * gy + GMSD_T) / (gx**2 + gy**2 + GMSD_T)
    return float(similarity.std())


def log_kernel(size: int = HFEN_SIZE, sigma: float = HFEN_SIGMA) -> np.ndarray:
    """MATLAB's ``fspecial('log', size, sigma)``: a Laplacian of Gaussian made to sum to zero."""
    half = (size - 1) / 2
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
    radius2 = xx**2 + yy**2
    gauss = np.exp(-radius2 / (2 * sigma**2))
    gauss[gauss < np.finfo(np.float64).eps * gauss.max()] = 0
    gauss /= gauss.sum()
    kernel = gauss * (radius2 - 2 * sigma**2) / sigma**4
    return kernel - kernel.mean()


def _norm_ratio(difference: np.ndarray, reference: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is not None:
        difference, reference = difference[mask], reference[mask]
    denominator = float(np.linalg.norm(reference))
    return float(np.linalg.norm(difference)) / denominator if denominator > 0 else float("nan")


def _hfen(sr: np.ndarray, gt: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
    """High-frequency error norm (see the module docstring); 0 for identical images."""
    kernel = log_kernel()

    def filtered(image: np.ndarray) -> np.ndarray:
        return cv2.filter2D(image, cv2.CV_64F, kernel, borderType=cv2.BORDER_REFLECT)

    reference = filtered(gt)
    return _norm_ratio(filtered(sr) - reference, reference, mask)


def _nrmse(sr: np.ndarray, gt: np.ndarray, data_range: float, mask: np.ndarray | None) -> float:
    """Normalised root-mean-square error ||sr - gt|| / ||gt||; 0 for identical images."""
    return _norm_ratio(sr - gt, gt, mask)


ms_ssim = _per_image(_ms_ssim)
haarpsi = _per_image(_haarpsi)
gmsd = _per_image(_gmsd)
hfen = _per_image(_hfen)
nrmse = _per_image(_nrmse)
