"""MS-SSIM, HaarPSI, GMSD against piq 0.8 (the reference implementation), HFEN against its MATLAB
definition, NRMSE against scikit-image, on real CT and MR slices."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from conftest import pydicom_file
from medsr.io import read_slices
from medsr.metrics import gmsd, haarpsi, hfen, ms_ssim, nrmse
from medsr.metrics.fullref import log_kernel


def _piq():
    """piq, imported with a stand-in for torchvision (which piq imports for its learned metrics,
    unused here, and which does not install beside the CPU build of torch)."""
    if "piq" not in sys.modules:
        vision, models, inception = (
            types.ModuleType(n) for n in ("torchvision", "torchvision.models", "torchvision.models.inception")
        )
        for name in ("InceptionA", "InceptionC", "InceptionE"):
            setattr(inception, name, type(name, (torch.nn.Module,), {}))
        models.vgg16 = models.vgg19 = models.inception_v3 = None  # piq's learned metrics: not used
        models.inception, vision.models = inception, models
        saved = {
            k: sys.modules.get(k)
            for k in ("torchvision", "torchvision.models", "torchvision.models.inception")
        }
        sys.modules.update(
            {"torchvision": vision, "torchvision.models": models, "torchvision.models.inception": inception}
        )
        try:
            pytest.importorskip("piq", reason="piq 0.8 (installed by make install without torchvision)")
        finally:
            for key, value in saved.items():
                if value is None:
                    sys.modules.pop(key, None)
                else:
                    sys.modules[key] = value
    return sys.modules["piq"]


@pytest.fixture(scope="module")
def pairs() -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(degraded, reference, data_range) on real slices: CT in stored units 0..4095 (odd size),
    MR on [0, 1] (upsampled to MS-SSIM's minimum size)."""
    import cv2

    rng = np.random.default_rng(0)
    ct = np.clip(read_slices(pydicom_file("CT_small.dcm"))[0].pixels + 1024, 0, 4095).astype(np.float64)
    ct = cv2.resize(ct, (187, 173), interpolation=cv2.INTER_CUBIC).clip(0, 4095)
    mr = read_slices(pydicom_file("MR_small.dcm"))[0].pixels.astype(np.float64)
    mr = cv2.resize((mr - mr.min()) / np.ptp(mr), (192, 192), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    out = []
    for image, scale in ((ct, 4095.0), (mr, 1.0)):
        blurred = cv2.GaussianBlur(image, (0, 0), 1.2)
        noisy = np.clip(blurred + rng.normal(0, 0.01 * scale, image.shape), 0, scale)
        out.append((noisy, image, scale))
    return out


@pytest.mark.parametrize(
    ("ours", "reference"),
    [(ms_ssim, "multi_scale_ssim"), (haarpsi, "haarpsi"), (gmsd, "gmsd")],
    ids=["ms_ssim", "haarpsi", "gmsd"],
)
def test_equal_to_piq_on_real_slices(pairs, ours, reference):
    piq = _piq()
    for sr, gt, data_range in pairs:
        expected = float(
            getattr(piq, reference)(
                torch.from_numpy(sr)[None, None], torch.from_numpy(gt)[None, None], data_range=data_range
            )
        )
        assert ours(sr, gt, data_range=data_range) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_identical_images_and_direction(pairs):
    sr, gt, data_range = pairs[1]
    assert ms_ssim(gt, gt, data_range=data_range) == pytest.approx(1.0)
    assert haarpsi(gt, gt, data_range=data_range) == pytest.approx(1.0, abs=1e-6)
    assert gmsd(gt, gt, data_range=data_range) == 0 and hfen(gt, gt) == 0 and nrmse(gt, gt) == 0
    worse = np.clip(gt + (sr - gt) * 3, 0, data_range)
    assert ms_ssim(worse, gt) < ms_ssim(sr, gt) and haarpsi(worse, gt) < haarpsi(sr, gt)
    assert (
        gmsd(worse, gt) > gmsd(sr, gt) and hfen(worse, gt) > hfen(sr, gt) and nrmse(worse, gt) > nrmse(sr, gt)
    )


def test_nrmse_is_scikit_images_euclidean_nrmse(pairs):
    from skimage.metrics import normalized_root_mse

    for sr, gt, data_range in pairs:
        expected = normalized_root_mse(gt, sr, normalization="euclidean")
        assert nrmse(sr, gt, data_range=data_range) == pytest.approx(expected, rel=1e-12)


def test_hfen_is_the_log_filtered_relative_error(pairs):
    from scipy import ndimage

    kernel = log_kernel()
    assert kernel.shape == (15, 15) and abs(kernel.sum()) < 1e-12 and kernel[7, 7] < 0
    for sr, gt, data_range in pairs:  # MATLAB: imfilter(x, fspecial('log', 15, 1.5), 'symmetric')
        a, b = (ndimage.correlate(i, kernel, mode="reflect") for i in (sr, gt))
        expected = np.linalg.norm(a - b) / np.linalg.norm(b)
        assert hfen(sr, gt, data_range=data_range) == pytest.approx(expected, rel=1e-10)
        assert hfen(sr * 0.5, gt * 0.5, data_range=data_range) == pytest.approx(expected, rel=1e-10)


def test_masks_batches_and_bad_input(pairs):
    sr, gt, data_range = pairs[1]
    mask = np.zeros(gt.shape, bool)
    mask[40:150, 30:160] = True
    inside = np.linalg.norm((sr - gt)[mask]) / np.linalg.norm(gt[mask])
    assert nrmse(sr, gt, mask=mask) == pytest.approx(inside)
    batch = torch.from_numpy(np.stack([sr, gt]))[:, None]
    values = gmsd(batch, torch.from_numpy(np.stack([gt, gt]))[:, None])
    assert values.shape == (2,) and values[1] == 0 and values[0] == pytest.approx(gmsd(sr, gt))
    with pytest.raises(ValueError, match="at least 161x161"):
        ms_ssim(sr[:150, :150], gt[:150, :150])
    with pytest.raises(ValueError, match="outside"):
        gmsd(sr * 3, gt)
