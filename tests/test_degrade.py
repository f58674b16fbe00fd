from __future__ import annotations

import numpy as np
import pytest
import torch

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
    np.testing.assert_array_equal(degrade_image(hr, Degradation(), seed=1, key="x"), degrade_image(hr, Degradation(), seed=9, key="z"))
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
