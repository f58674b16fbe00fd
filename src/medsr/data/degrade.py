"""HR -> LR degradations, deterministic per image and seed, in torch (CPU or GPU, batched).

Sampling grid (all kinds, every scale s, both axes): LR pixel k is centred at HR position
``(k + 0.5) * s - 0.5`` (HR pixel j centred at j), i.e. at the centre of the s x s block of HR pixels
``s*k .. s*k + s - 1`` (for x4: 4k + 1.5). This is the align_corners=False convention that OpenCV's
``resize``, ``F.interpolate`` and the networks' bicubic skip assume when they upsample, so an LR
image upsampled by any of them lies on its HR image without a sub-pixel shift.

* ``bicubic``: antialiased bicubic downsampling (the kernel widened by the scale, as MATLAB's
  ``imresize`` and Pillow do), the standard SR protocol; ``F.interpolate(antialias=True,
  align_corners=False)`` samples that grid.
* ``kspace``: MRI-realistic: keep the central 1/scale of k-space in each direction (optionally
  tapered by a Hann or Tukey window, symmetric about the DC bin, to limit ringing), multiply by
  the linear phase ramp ``exp(2 pi i f (s - 1) / (2 N))`` (f: the signed HR frequency of each kept
  bin, N: the HR size on that axis), inverse FFT on the small grid, magnitude. Without the ramp the
  inverse FFT would sample the band-limited image at HR positions s*k; the ramp moves every sample
  exactly (s - 1) / 2 HR pixels on, to (k + 0.5) * s - 0.5.
* ``blur-noise``: Gaussian blur (``blur_sigma``, default 0.5 x scale, reflect border) evaluated at
  the LR sample positions (k + 0.5) * s - 0.5, which are half-integer for even scales (the kernel
  is then sampled at half-integer offsets, an even-length kernel), then Gaussian or Rician noise of
  standard deviation ``noise_level``.

All outputs are clipped to [0, 1]. HR sizes must be multiples of the scale (see ``crop_to_scale``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medsr.choices import DEGRADATION_KINDS as KINDS
from medsr.choices import NOISES, SCALES, TAPERS


@dataclass(frozen=True)
class Degradation:
    """A degradation protocol (validated on construction)."""

    kind: str = "bicubic"  # default: the standard SR protocol, and the paper's
    scale: int = 4  # default: the paper's x4
    taper: str = "none"  # kspace: none | hann | tukey
    tukey_alpha: float = 0.5  # kspace with taper=tukey: fraction of the window that is tapered
    blur_sigma: float | None = None  # blur-noise: Gaussian sigma in HR pixels (None: 0.5 * scale)
    noise: str = "gaussian"  # blur-noise: gaussian | rician
    noise_level: float = 0.01  # blur-noise: noise standard deviation on the [0, 1] scale

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"degradation must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.scale not in SCALES:
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


def degradation_from(
    settings: object, *, kind_field: str = "degradation", scale: int | None = None
) -> Degradation:
    """A ``Degradation`` from any object that names its fields as ``Degradation`` does (parsed CLI
    flags, a run config's ``evaluate:`` section, a training config's ``data.degradation``), the kind
    in ``kind_field``; absent fields keep ``Degradation``'s defaults.

    Raises:
        ValueError: a value ``Degradation`` refuses (the caller names the flag or key).
    """
    fields = ("taper", "tukey_alpha", "blur_sigma", "noise", "noise_level")
    return Degradation(
        kind=getattr(settings, kind_field),
        scale=scale if scale is not None else settings.scale,
        **{name: getattr(settings, name) for name in fields if hasattr(settings, name)},
    )


def image_seed(seed: int, key: str) -> int:
    """A 63-bit seed derived from a run seed and an image id (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") >> 1


def crop_to_scale(image: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right rows and columns so that both sides are multiples of ``scale``."""
    height, width = image.shape[-2:]
    return image[..., : height - height % scale, : width - width % scale]


def _signed_frequencies(length: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Signed frequency (in bins, DC = 0) of each of the ``length`` central bins, in fftshift order.

    These are the bins ``degrade`` keeps: ``-(length // 2) .. length - 1 - length // 2``; the
    same integers are the bins' HR frequencies (cycles per HR image)."""
    return torch.arange(length, device=device, dtype=dtype) - length // 2


def _window(length: int, taper: str, alpha: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Taper of the ``length`` kept k-space bins (fftshift order), symmetric about the DC bin.

    Returns a (length,) tensor in (0, 1] (Tukey: [0, 1]) with value 1 at DC, a function of |f| only
    (f from ``_signed_frequencies``). With R = length // 2 (the largest |f| kept):
    ``hann``: 0.5 + 0.5 cos(pi f / (R + 1)), non-zero at every kept bin; ``tukey``: flat for
    |f| <= (1 - alpha) R, a cosine fall to 0 at |f| = R. For odd lengths these are the windows of
    earlier versions; for even lengths those were centred half a bin off DC."""
    if taper == "none":
        return torch.ones(length, device=device, dtype=dtype)
    radius = length // 2
    f = _signed_frequencies(length, device, dtype).abs()
    if taper == "hann":
        return 0.5 + 0.5 * torch.cos(torch.pi * f / (radius + 1))
    width = alpha * radius  # Tukey: flat centre, cosine edges
    window = torch.ones(length, device=device, dtype=dtype)
    if width > 0:
        edge = f > radius - width
        window[edge] = 0.5 * (1 + torch.cos(torch.pi * (f[edge] - (radius - width)) / width))
    return window


def _phase_ramp(
    length: int, hr_length: int, shift: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """(length,) complex ``exp(2 pi i f shift / hr_length)`` for the kept bins (fftshift order).

    Multiplying the spectrum by it samples the band-limited image ``shift`` HR pixels further on."""
    f = _signed_frequencies(length, device, dtype)
    return torch.polar(torch.ones_like(f), 2 * torch.pi * f * shift / hr_length)


def _kspace_lowres(hr: torch.Tensor, spec: Degradation) -> torch.Tensor:
    """k-space truncation: (N, 1, H, W) in [0, 1] -> (N, 1, H/s, W/s) magnitude (not clipped), hr's dtype.

    Sample k (per axis) is the band-limited image at HR position (k + 0.5) * s - 0.5."""
    s = spec.scale
    height, width = hr.shape[-2:]
    h, w = height // s, width // s
    work = hr.double() if hr.device.type == "cpu" else hr.float()
    spectrum = torch.fft.fftshift(torch.fft.fft2(work, norm="forward"), dim=(-2, -1))
    top, left = height // 2 - h // 2, width // 2 - w // 2
    centre = spectrum[..., top : top + h, left : left + w]
    shift = (s - 1) / 2.0
    rows = _window(h, spec.taper, spec.tukey_alpha, hr.device, work.dtype) * _phase_ramp(
        h, height, shift, hr.device, work.dtype
    )
    cols = _window(w, spec.taper, spec.tukey_alpha, hr.device, work.dtype) * _phase_ramp(
        w, width, shift, hr.device, work.dtype
    )
    small = torch.fft.ifft2(
        torch.fft.ifftshift(centre * torch.outer(rows, cols), dim=(-2, -1)), norm="forward"
    )
    return small.abs().to(hr.dtype)


def _gaussian_taps(
    sigma: float, offset: float, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, int, int]:
    """Normalised Gaussian kernel sampled at integer + ``offset`` (0 or 0.5) distances.

    Returns (kernel, pad_before, pad_after): kernel[j] = g(j - pad_before - offset), length
    pad_before + pad_after + 1, so that a correlation of the padded signal with it gives, at output
    index i, the blurred signal at position i + offset. Radius int(4 sigma + 0.5), at least 1;
    ``offset`` 0.5 gives an even-length kernel symmetric about its middle."""
    radius = max(1, int(4.0 * sigma + 0.5))
    extra = 1 if offset else 0
    t = torch.arange(-radius, radius + 1 + extra, device=device, dtype=dtype) - offset
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    return kernel / kernel.sum(), radius, radius + extra


def _blur_decimate(x: torch.Tensor, sigma: float, scale: int) -> torch.Tensor:
    """Gaussian blur sampled on the LR grid: (N, 1, H, W) -> (N, 1, H/s, W/s).

    Output k (per axis) is the separable Gaussian blur (reflect border; replicate for images
    too small to reflect) at HR position (k + 0.5) * s - 0.5, which lies half-way between HR
    pixels for even s."""
    position = (scale - 1) / 2.0  # of LR pixel 0; LR pixel k is at position + s k
    first, offset = int(position), position - int(position)
    kernel, before, after = _gaussian_taps(sigma, offset, x.device, x.dtype)
    mode = "reflect" if min(x.shape[-2:]) > after else "replicate"
    y = F.pad(x, (before, after, before, after), mode=mode)
    y = F.conv2d(y, kernel.view(1, 1, 1, -1))
    y = F.conv2d(y, kernel.view(1, 1, -1, 1))
    return y[..., first::scale, first::scale]


def degrade(hr: torch.Tensor, spec: Degradation, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Make LR images.

    LR pixel (i, j) is centred at HR position ((i + 0.5) * s - 0.5, (j + 0.5) * s - 0.5), s =
    ``spec.scale``, HR pixel (y, x) being centred at (y, x): the centre of its s x s HR block, the
    align_corners=False grid of OpenCV's ``resize`` and ``F.interpolate``. ``bicubic`` is the
    antialiased bicubic filter there, ``kspace`` the magnitude of the truncated (and tapered)
    band-limited image there, ``blur-noise`` the Gaussian-blurred image there plus noise.

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
        raise ValueError(
            f"HR size {height}x{width} is not a multiple of the scale {s}; crop it first (crop_to_scale)"
        )
    h, w = height // s, width // s
    if spec.kind == "bicubic":
        lq = F.interpolate(hr, size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    elif spec.kind == "kspace":
        lq = _kspace_lowres(hr, spec)
    else:
        lq = _blur_decimate(hr, spec.sigma, s)
        if spec.noise_level > 0:
            noise = (
                torch.randn(lq.shape, generator=generator, device=lq.device, dtype=lq.dtype)
                * spec.noise_level
            )
            if spec.noise == "gaussian":
                lq = lq + noise
            else:
                imaginary = (
                    torch.randn(lq.shape, generator=generator, device=lq.device, dtype=lq.dtype)
                    * spec.noise_level
                )
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
