from __future__ import annotations

import numpy as np
import pytest
import torch

from medsr.data.alignment import grid_shift
from medsr.data.degrade import Degradation, crop_to_scale, degrade, degrade_image, image_seed
from medsr.io import read_slices


@pytest.fixture
def hr(ct_small) -> np.ndarray:
    pixels = read_slices(ct_small)[0].pixels
    return np.clip((pixels + 1024) / 4095, 0, 1).astype(np.float32)


@pytest.mark.parametrize("kind", ["bicubic", "kspace", "blur-noise"])
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_shapes_range_and_determinism(hr, kind, scale):
    spec = Degradation(kind, scale)
    lq = degrade_image(hr, spec, seed=3, key="img-1")
    assert lq.shape == (128 // scale, 128 // scale) and lq.dtype == np.float32
    assert 0.0 <= lq.min() and lq.max() <= 1.0
    np.testing.assert_array_equal(lq, degrade_image(hr, spec, seed=3, key="img-1"))
    assert abs(float(lq.mean()) - float(hr.mean())) < 0.02  # brightness is preserved


def test_noise_depends_on_seed_and_image_but_bicubic_does_not(hr):
    noisy = Degradation("blur-noise", 4, noise_level=0.02)
    a = degrade_image(hr, noisy, seed=1, key="x")
    assert not np.array_equal(a, degrade_image(hr, noisy, seed=2, key="x"))
    assert not np.array_equal(a, degrade_image(hr, noisy, seed=1, key="y"))
    clean = Degradation("blur-noise", 4, noise_level=0.0)
    residual = a - degrade_image(hr, clean, seed=1, key="x")
    assert residual.std() == pytest.approx(0.02, rel=0.25)
    np.testing.assert_array_equal(
        degrade_image(hr, Degradation(), seed=1, key="x"), degrade_image(hr, Degradation(), seed=9, key="z")
    )
    assert image_seed(0, "a") != image_seed(0, "b") and image_seed(0, "a") == image_seed(0, "a")


def test_bicubic_is_antialiased():
    stripes = np.tile(np.array([0.0, 1.0], dtype=np.float32), (64, 32))  # 1-pixel stripes, Nyquist
    lq = degrade_image(stripes, Degradation("bicubic", 4))
    assert lq.std() < 0.02 and lq.mean() == pytest.approx(0.5, abs=0.02)  # aliasing would keep stripes


def test_kspace_keeps_the_central_frequencies_exactly(hr):
    lq = degrade_image(hr, Degradation("kspace", 4))
    full = np.fft.fftshift(np.fft.fft2(hr.astype(np.float64), norm="forward"))
    small = np.fft.fftshift(np.fft.fft2(lq.astype(np.float64), norm="forward"))
    centre = full[64 - 16 : 64 + 16, 64 - 16 : 64 + 16]
    assert np.abs(np.abs(small[1:-1, 1:-1]) - np.abs(centre[1:-1, 1:-1])).max() < 5e-3  # magnitude only
    tapered = degrade_image(hr, Degradation("kspace", 4, taper="hann"))
    assert np.abs(np.diff(tapered, axis=1)).mean() < np.abs(np.diff(lq, axis=1)).mean()  # less ringing


def test_batch_equals_single_images_and_sizes_are_checked(hr):
    batch = torch.from_numpy(np.stack([hr, hr[::-1].copy()]))[:, None]
    out = degrade(batch, Degradation())
    np.testing.assert_allclose(out[1, 0].numpy(), degrade_image(hr[::-1].copy(), Degradation()), atol=1e-6)
    with pytest.raises(ValueError, match="multiple of the scale"):
        degrade(torch.zeros(1, 1, 30, 32), Degradation())
    assert crop_to_scale(np.zeros((30, 33)), 4).shape == (28, 32)
    with pytest.raises(ValueError, match="degradation must be one of"):
        Degradation("jpeg")


# --- Sampling grid: LR pixel k must sit at HR position (k + 0.5) * scale - 0.5 on both axes -----
# OpenCV's resize, the interpolation baselines and the networks' bicubic skip (align_corners=False)
# all assume that grid; an LR image sampled elsewhere comes back shifted after upsampling.

ALIGNMENT_CASES = [
    ("bicubic", "none"),
    ("kspace", "none"),
    ("kspace", "hann"),
    ("kspace", "tukey"),
    ("blur-noise", "none"),
]


@pytest.fixture(scope="module")
def real_hr() -> np.ndarray:
    """Real 512x512 head CT (pydicom's J2K_pixelrep_mismatch.dcm), float32 in [0, 1] (min/max)."""
    from pydicom.data import get_testdata_file

    pixels = read_slices(get_testdata_file("J2K_pixelrep_mismatch.dcm"))[0].pixels.astype(np.float64)
    return ((pixels - pixels.min()) / (pixels.max() - pixels.min())).astype(np.float32)


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize(("kind", "taper"), ALIGNMENT_CASES)
def test_lr_grid_matches_opencv_resize_on_real_ct(real_hr, kind, taper, scale):
    import cv2

    hr = crop_to_scale(real_hr, scale)
    lq = degrade_image(hr, Degradation(kind, scale, taper=taper, noise_level=0.0))
    up = cv2.resize(lq, (hr.shape[1], hr.shape[0]), interpolation=cv2.INTER_CUBIC)
    shift = grid_shift(hr, up, scale)
    assert np.abs(shift).max() <= 0.05, (
        f"{kind}/{taper} x{scale}: LR grid off by (dy, dx) = {shift.round(3)} HR px"
    )


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize(("kind", "taper"), ALIGNMENT_CASES)
def test_lr_grid_is_mirror_symmetric(hr, kind, taper, scale):
    """Exact form of the check above: the grid (k + 0.5) * s - 0.5 is the only s-spaced grid that
    mirrors onto itself, so degrading the image turned by 180 degrees must give the LR image turned
    by 180 degrees (an offset on either axis breaks this). Both axes at once: for kspace the
    flip of one axis alone also moves an even LR grid's unpaired -N/2 frequency bin to +N/2, which
    truncation does not keep (a deviation below 1e-3 that is not a shift)."""
    x = torch.from_numpy(crop_to_scale(hr[:, 8:], scale).copy())[
        None, None
    ]  # not square: 128 x 120 (x3: 126 x 120)
    spec = Degradation(kind, scale, taper=taper, noise_level=0.0)
    turned = degrade(x.flip(-2, -1), spec).flip(-2, -1)
    torch.testing.assert_close(turned, degrade(x, spec), atol=1e-6, rtol=0)


def _expected_taper(length: int, taper: str, alpha: float = 0.5) -> np.ndarray:
    """The documented windows of the signed frequencies -(length // 2) .. length - 1 - length // 2."""
    f = np.abs(np.arange(length) - length // 2).astype(np.float64)
    radius = length // 2
    if taper == "none":
        return np.ones(length)
    if taper == "hann":
        return 0.5 + 0.5 * np.cos(np.pi * f / (radius + 1))
    width = alpha * radius
    return np.where(
        f <= radius - width, 1.0, 0.5 * (1 + np.cos(np.pi * (f - radius + width) / max(width, 1e-12)))
    )


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("taper", ["none", "hann", "tukey"])
def test_kspace_is_the_tapered_spectrum_times_the_exact_phase_ramp(hr, taper, scale):
    """On a positive image (so that the magnitude is the identity), the LR spectrum must be the
    central HR spectrum times the taper (symmetric about DC) times exp(2 pi i f (s - 1) / (2 N))."""
    image = (0.4 + 0.2 * crop_to_scale(hr[:, 8:], scale)).astype(
        np.float64
    )  # not square; stays > 0 after truncation
    lq = degrade_image(image, Degradation("kspace", scale, taper=taper)).astype(np.float64)
    expected = np.fft.fftshift(np.fft.fft2(image, norm="forward"))
    height, width = image.shape
    h, w = lq.shape
    expected = expected[
        height // 2 - h // 2 : height // 2 - h // 2 + h, width // 2 - w // 2 : width // 2 - w // 2 + w
    ]
    fy, fx = np.arange(h) - h // 2, np.arange(w) - w // 2
    shift = (scale - 1) / 2
    expected = expected * np.outer(
        _expected_taper(h, taper) * np.exp(2j * np.pi * fy * shift / height),
        _expected_taper(w, taper) * np.exp(2j * np.pi * fx * shift / width),
    )
    actual = np.fft.fftshift(np.fft.fft2(lq, norm="forward"))
    paired = np.ix_(
        np.abs(fy) < (h + 1) // 2, np.abs(fx) < (w + 1) // 2
    )  # leave out an even grid's unpaired -N/2 bin
    np.testing.assert_allclose(actual[paired], expected[paired], rtol=0, atol=2e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_batch_matches_cpu(hr):
    for kind, taper in ALIGNMENT_CASES:
        for scale in (2, 3, 4, 8):
            x = torch.from_numpy(np.stack([crop_to_scale(hr, scale), crop_to_scale(hr[::-1], scale)]))[
                :, None
            ]
            spec = Degradation(kind, scale, taper=taper, noise_level=0.0)
            on_gpu = degrade(x.cuda(), spec)
            assert on_gpu.dtype == x.dtype and on_gpu.device.type == "cuda"
            assert on_gpu.shape == (2, 1, *(n // scale for n in x.shape[-2:]))
            torch.testing.assert_close(
                on_gpu.cpu(), degrade(x, spec), atol=2e-5, rtol=0, msg=f"{kind} {taper} x{scale}"
            )
