"""Image-quality metrics with an explicit data range: PSNR and SSIM (Wang et al. 2004).

One SSIM definition everywhere: Gaussian window 11x11, sigma 1.5, K1 = 0.01, K2 = 0.03,
population (co)variances, averaged over the positions where the whole window fits (the
``valid`` region, as Wang et al.'s reference code and ``skimage.metrics.structural_similarity``
with ``gaussian_weights=True, use_sample_covariance=False``). Inputs are numpy arrays (H, W) or
torch tensors (N, 1, H, W) / (H, W); images are in [0, data_range] (default [0, 1]); values
outside raise. ``crop_border`` removes that many pixels on every side first (0 by default).

Foreground-masked variants: black background around the body inflates both metrics, so each
metric also accepts a boolean ``mask`` (see ``body_mask``): PSNR over the masked pixels, SSIM
averaged over the masked positions of the SSIM map.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03
_PAD = (SSIM_WINDOW - 1) // 2


def _is_torch(value) -> bool:
    return type(value).__module__.startswith("torch")


def _check(sr: np.ndarray, gt: np.ndarray, data_range: float) -> None:
    if sr.shape != gt.shape:
        raise ValueError(f"shapes differ: sr {sr.shape} vs gt {gt.shape}")
    if data_range <= 0:
        raise ValueError(f"data_range must be > 0, got {data_range}")
    tolerance = 1e-6 * data_range
    for name, image in (("sr", sr), ("gt", gt)):
        low, high = float(image.min()), float(image.max())
        if low < -tolerance or high > data_range + tolerance:
            raise ValueError(
                f"{name} values [{low:g}, {high:g}] fall outside [0, {data_range:g}]; clip or pass the right data_range"
            )


def _crop(image, border: int):
    return image[..., border:-border, border:-border] if border > 0 else image


def _mse(sr: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> float:
    diff = (sr.astype(np.float64) - gt.astype(np.float64)) ** 2
    return float(diff[mask].mean() if mask is not None else diff.mean())


def _psnr_from_mse(mse: float, data_range: float) -> float:
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def ssim_map(sr: np.ndarray, gt: np.ndarray, *, data_range: float = 1.0) -> np.ndarray:
    """SSIM map (H - 10, W - 10) of two float images (H, W): the ``valid`` positions only."""
    x = np.asarray(sr, dtype=np.float64)
    y = np.asarray(gt, dtype=np.float64)
    if min(x.shape) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {x.shape}")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (SSIM_WINDOW, SSIM_WINDOW), SSIM_SIGMA, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (numerator / denominator)[_PAD:-_PAD, _PAD:-_PAD]


def psnr(sr, gt, *, data_range: float = 1.0, crop_border: int = 0, mask: np.ndarray | None = None):
    """Peak signal-to-noise ratio in dB, ``10 log10(data_range^2 / MSE)``.

    Args:
        sr, gt: numpy (H, W) or torch (N, 1, H, W) / (H, W), values in [0, data_range].
        data_range: the value range (1 for [0, 1] images, 4095 for 12-bit, ...).
        crop_border: pixels removed on every side before scoring.
        mask: optional boolean (H, W) foreground mask (numpy inputs only).

    Returns:
        float for one image; a float64 torch tensor (N,) for a torch batch. inf if identical.
    """
    if _is_torch(sr) or _is_torch(gt):
        return _torch_metric(psnr, sr, gt, data_range=data_range, crop_border=crop_border, mask=mask)
    sr, gt = np.asarray(sr), np.asarray(gt)
    _check(sr, gt, data_range)
    sr, gt = _crop(sr, crop_border), _crop(gt, crop_border)
    mask = _crop(mask, crop_border) if mask is not None else None
    return _psnr_from_mse(_mse(sr, gt, mask), data_range)


def ssim(sr, gt, *, data_range: float = 1.0, crop_border: int = 0, mask: np.ndarray | None = None):
    """Structural similarity (Wang et al. 2004; see the module docstring for the exact definition).

    Args/Returns: as ``psnr``; values in [-1, 1], 1 for identical images. With ``mask``, the mean
    of the SSIM map over the masked positions of the valid region.
    """
    if _is_torch(sr) or _is_torch(gt):
        return _torch_metric(ssim, sr, gt, data_range=data_range, crop_border=crop_border, mask=mask)
    sr, gt = np.asarray(sr), np.asarray(gt)
    _check(sr, gt, data_range)
    sr, gt = _crop(sr, crop_border), _crop(gt, crop_border)
    values = ssim_map(sr, gt, data_range=data_range)
    if mask is None:
        return float(values.mean())
    inner = _crop(mask, crop_border)[_PAD:-_PAD, _PAD:-_PAD]
    return float(values[inner].mean()) if inner.any() else float("nan")


def image_scores(
    sr: np.ndarray, gt: np.ndarray, mask: np.ndarray, *, data_range: float = 1.0, crop_border: int = 0
) -> dict[str, float]:
    """PSNR and SSIM of one image pair, whole and inside ``mask`` (the SSIM map is computed once).

    Returns:
        ``psnr``, ``ssim``, ``psnr_fg``, ``ssim_fg`` (same definitions as ``psnr`` and ``ssim``).
    """
    sr, gt = np.asarray(sr), np.asarray(gt)
    _check(sr, gt, data_range)
    sr, gt, mask = _crop(sr, crop_border), _crop(gt, crop_border), _crop(mask, crop_border)
    squared = (sr.astype(np.float64) - gt.astype(np.float64)) ** 2
    values = ssim_map(sr, gt, data_range=data_range)
    inner = mask[_PAD:-_PAD, _PAD:-_PAD]
    return {
        "psnr": _psnr_from_mse(float(squared.mean()), data_range),
        "ssim": float(values.mean()),
        "psnr_fg": _psnr_from_mse(float(squared[mask].mean()), data_range) if mask.any() else float("nan"),
        "ssim_fg": float(values[inner].mean()) if inner.any() else float("nan"),
    }


def _torch_metric(function, sr, gt, **kwargs):
    import torch

    sr_array = sr.detach().to("cpu", torch.float64).numpy() if _is_torch(sr) else np.asarray(sr, np.float64)
    gt_array = gt.detach().to("cpu", torch.float64).numpy() if _is_torch(gt) else np.asarray(gt, np.float64)
    if sr_array.ndim == 2:
        return torch.tensor(function(sr_array, gt_array, **kwargs), dtype=torch.float64)
    if sr_array.ndim != 4 or sr_array.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W) or (H, W), got shape {sr_array.shape}")
    return torch.tensor(
        [function(a[0], b[0], **kwargs) for a, b in zip(sr_array, gt_array)], dtype=torch.float64
    )


def body_mask(image: np.ndarray, *, min_component: float = 0.005) -> np.ndarray:
    """Foreground (body) mask of an HR image (H, W) in [0, 1].

    Pixels of the lightly smoothed (sigma 2) image above half its Otsu threshold, closed, holes
    filled (lungs, ventricles), components smaller than ``min_component`` of the image removed.
    Returns a boolean (H, W) array; all True when no foreground stands out.
    """
    from skimage.filters import threshold_otsu

    image = np.asarray(image, dtype=np.float32)
    smoothed = cv2.GaussianBlur(image, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT)
    if float(smoothed.max() - smoothed.min()) < 1e-6:
        return np.ones(image.shape, bool)
    threshold = 0.5 * float(threshold_otsu(smoothed))
    padded = np.pad(smoothed > threshold, 2, mode="edge")  # so that closing does not erode the border
    mask = ndimage.binary_fill_holes(ndimage.binary_closing(padded, iterations=2)[2:-2, 2:-2])
    labels, count = ndimage.label(mask)
    if count:
        sizes = ndimage.sum(mask, labels, index=np.arange(1, count + 1))
        mask = np.isin(labels, 1 + np.flatnonzero(sizes >= min_component * mask.size))
    return mask if mask.any() else np.ones(image.shape, bool)
