"""HR -> LR degradations, deterministic per image and seed, in torch (CPU or GPU, batched).

* ``bicubic``: antialiased bicubic downsampling (the kernel widened by the scale, as MATLAB's
  ``imresize`` and Pillow do), the standard SR protocol.
* ``kspace``: MRI-realistic: keep the central 1/scale of k-space in each direction (optionally
  tapered by a Hann or Tukey window to limit ringing), inverse FFT on the small grid, magnitude.
  The inverse FFT of the cropped spectrum is directly the LR grid.
* ``blur-noise``: Gaussian blur (``blur_sigma``, default 0.5 x scale), decimation (every
  scale-th pixel, centred), then Gaussian or Rician noise of standard deviation ``noise_level``.

All outputs are clipped to [0, 1]. HR sizes must be multiples of the scale (see ``crop_to_scale``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("bicubic", "kspace", "blur-noise")
TAPERS = ("none", "hann", "tukey")
NOISES = ("gaussian", "rician")


@dataclass(frozen=True)
class Degradation:
    """A degradation protocol (validated on construction)."""

    kind: str = "bicubic"
    scale: int = 4
    taper: str = "none"  # kspace: none | hann | tukey
    tukey_alpha: float = 0.5  # kspace with taper=tukey: fraction of the window that is tapered
    blur_sigma: float | None = None  # blur-noise: Gaussian sigma in HR pixels (None: 0.5 * scale)
    noise: str = "gaussian"  # blur-noise: gaussian | rician
    noise_level: float = 0.01  # blur-noise: noise standard deviation on the [0, 1] scale

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"degradation must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.scale not in (2, 3, 4, 8):
            raise ValueError(f"scale must be 2, 3, 4 or 8; got {self.scale}")
        if self.taper not in TAPERS:
            raise ValueError(f"taper must be one of {', '.join(TAPERS)}; got {self.taper!r}")
        if self.noise not in NOISES:
            raise ValueError(f"noise must be one of {', '.join(NOISES)}; got {self.noise!r}")
        if not 0.0 < self.tukey_alpha <= 1.0:
            raise ValueError(f"tukey_alpha must be in (0, 1]; got {self.tukey_alpha}")
        if self.noise_level < 0 or (self.blur_sigma is not None and self.blur_sigma <= 0):
            raise ValueError("noise_level must be >= 0 and blur_sigma > 0")

    @property
    def sigma(self) -> float:
        return self.blur_sigma if self.blur_sigma is not None else 0.5 * self.scale

    def describe(self) -> dict:
        """The protocol in full (for summary.json); only the fields that apply to ``kind``."""
        data = asdict(self)
        if self.kind != "kspace":
            data.pop("taper"), data.pop("tukey_alpha")
        elif self.taper != "tukey":
            data.pop("tukey_alpha")
        if self.kind != "blur-noise":
            data.pop("blur_sigma"), data.pop("noise"), data.pop("noise_level")
        else:
            data["blur_sigma"] = self.sigma
        return data


def image_seed(seed: int, key: str) -> int:
    """A 63-bit seed derived from a run seed and an image id (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") >> 1


def crop_to_scale(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right rows and columns so that both sides are multiples of ``scale``."""
    height, width = image.shape[-2:]
    return image[..., : height - height % scale, : width - width % scale]


def _window(length: int, taper: str, alpha: float, device, dtype) -> torch.Tensor:
    if taper == "none":
        return torch.ones(length, device=device, dtype=dtype)
    n = torch.arange(length, device=device, dtype=dtype)
    if taper == "hann":  # symmetric Hann that stays non-zero at the edges (length + 2 points)
        return 0.5 - 0.5 * torch.cos(2 * torch.pi * (n + 1) / (length + 1))
    width = alpha * (length - 1) / 2.0  # Tukey: flat centre, cosine edges
    window = torch.ones(length, device=device, dtype=dtype)
    if width > 0:
        left = n < width
        right = n > (length - 1) - width
        window[left] = 0.5 * (1 + torch.cos(torch.pi * (n[left] / width - 1)))
        window[right] = 0.5 * (1 + torch.cos(torch.pi * ((n[right] - (length - 1)) / width + 1)))
    return window


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, int(4.0 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    pad = (radius, radius, radius, radius)
    mode = "reflect" if min(x.shape[-2:]) > radius else "replicate"
    y = F.pad(x, pad, mode=mode)
    y = F.conv2d(y, kernel.view(1, 1, 1, -1))
    return F.conv2d(y, kernel.view(1, 1, -1, 1))


def degrade(hr: torch.Tensor, spec: Degradation, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Make LR images.

    Args:
        hr: (N, 1, H, W) float tensor in [0, 1], H and W multiples of ``spec.scale``.
        spec: the degradation.
        generator: random source for the noise of ``blur-noise`` (on ``hr``'s device).

    Returns:
        (N, 1, H / scale, W / scale) tensor in [0, 1], same dtype and device.
    """
    if hr.ndim != 4 or hr.shape[1] != 1:
        raise ValueError(f"expected (N, 1, H, W), got shape {tuple(hr.shape)}")
    s = spec.scale
    height, width = hr.shape[-2:]
    if height % s or width % s:
        raise ValueError(f"HR size {height}x{width} is not a multiple of the scale {s}; crop it first (crop_to_scale)")
    h, w = height // s, width // s
    if spec.kind == "bicubic":
        lq = F.interpolate(hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    elif spec.kind == "kspace":
        work = hr.double() if hr.device.type == "cpu" else hr.float()
        spectrum = torch.fft.fftshift(torch.fft.fft2(work, norm="forward"), dim=(-2, -1))
        top, left = height // 2 - h // 2, width // 2 - w // 2
        centre = spectrum[..., top : top + h, left : left + w]
        window = torch.outer(
            _window(h, spec.taper, spec.tukey_alpha, hr.device, work.dtype),
            _window(w, spec.taper, spec.tukey_alpha, hr.device, work.dtype),
        )
        small = torch.fft.ifft2(torch.fft.ifftshift(centre * window, dim=(-2, -1)), norm="forward")
        lq = small.abs().to(hr.dtype)
    else:
        blurred = _gaussian_blur(hr, spec.sigma)
        lq = blurred[..., s // 2 :: s, s // 2 :: s]
        if spec.noise_level > 0:
            noise = torch.randn(lq.shape, generator=generator, device=lq.device, dtype=lq.dtype) * spec.noise_level
            if spec.noise == "gaussian":
                lq = lq + noise
            else:
                imaginary = torch.randn(lq.shape, generator=generator, device=lq.device, dtype=lq.dtype) * spec.noise_level
                lq = torch.sqrt((lq + noise) ** 2 + imaginary**2)
    return lq.clamp(0.0, 1.0)


def degrade_image(hr: np.ndarray, spec: Degradation, *, seed: int = 0, key: str = "") -> np.ndarray:
    """One image: float (H, W) in [0, 1] (multiples of the scale) -> float32 (H/s, W/s) in [0, 1].

    The noise (``blur-noise``) is drawn from a generator seeded by ``image_seed(seed, key)``, so the
    same image id and seed give the same LR image in every run and for every method.
    """
    generator = torch.Generator().manual_seed(image_seed(seed, key))
    tensor = torch.from_numpy(np.ascontiguousarray(hr, dtype=np.float32))[None, None]
    return degrade(tensor, spec, generator=generator)[0, 0].numpy()
