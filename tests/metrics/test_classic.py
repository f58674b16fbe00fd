from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from conftest import NIBABEL_DATA, pydicom_file
from medsr.io import read_slices
from medsr.metrics import body_mask, image_scores, psnr, ssim
from medsr.models import build_model


def _real_pairs():
    """(HR, bicubic-upsampled LR) pairs from real CT, MR and a NIfTI head slice, in [0, 1]."""
    images = [
        read_slices(pydicom_file("CT_small.dcm"))[0].pixels,
        read_slices(pydicom_file("MR_small.dcm"))[0].pixels,
    ]
    images.append(read_slices(NIBABEL_DATA / "anatomical.nii")[12].pixels[:32, :40])
    bicubic = build_model("bicubic", scale=2)
    pairs = []
    for image in images:
        hr = ((image - image.min()) / np.ptp(image)).astype(np.float64)
        h, w = hr.shape[0] // 2 * 2, hr.shape[1] // 2 * 2
        hr = hr[:h, :w]
        lq = hr.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        pairs.append((bicubic.enhance(lq).astype(np.float64), hr))
    return pairs


@pytest.mark.parametrize("index", [0, 1, 2])
def test_psnr_and_ssim_match_scikit_image_on_real_images(index):
    sr, gt = _real_pairs()[index]
    assert psnr(sr, gt) == pytest.approx(
        peak_signal_noise_ratio(gt, sr, data_range=1.0), abs=1e-10
    )  # the README says 1e-10
    reference = structural_similarity(
        gt, sr, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(sr, gt) == pytest.approx(reference, abs=1e-10)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_integer_ranges_with_explicit_data_range(bits):
    sr, gt = _real_pairs()[0]
    top = 2**bits - 1
    sr_int, gt_int = np.rint(sr * top), np.rint(gt * top)
    assert psnr(sr_int, gt_int, data_range=top) == pytest.approx(
        peak_signal_noise_ratio(gt_int, sr_int, data_range=top), abs=1e-10
    )
    reference = structural_similarity(
        gt_int, sr_int, data_range=top, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(sr_int, gt_int, data_range=top) == pytest.approx(reference, abs=1e-10)
    with pytest.raises(ValueError, match="outside"):
        psnr(sr_int, gt_int)  # the default data_range of 1 does not fit: raise, never guess


def test_torch_batches_give_one_value_per_image():
    pairs = _real_pairs()[:1] * 3
    sr = torch.tensor(np.stack([p[0] for p in pairs]))[:, None]
    gt = torch.tensor(np.stack([p[1] for p in pairs]))[:, None]
    values = ssim(sr, gt)
    assert values.shape == (3,) and torch.allclose(
        values, torch.full((3,), ssim(pairs[0][0], pairs[0][1]), dtype=torch.float64)
    )
    assert float(psnr(sr[0, 0], gt[0, 0])) == pytest.approx(psnr(pairs[0][0], pairs[0][1]))


def test_border_crop_identity_and_masked_scores():
    sr, gt = _real_pairs()[0]
    assert psnr(gt, gt) == float("inf") and ssim(gt, gt) == pytest.approx(1.0)
    assert psnr(sr, gt, crop_border=4) == pytest.approx(
        peak_signal_noise_ratio(gt[4:-4, 4:-4], sr[4:-4, 4:-4], data_range=1)
    )
    mask = body_mask(gt)
    assert 0.2 < mask.mean() < 1.0
    scores = image_scores(sr, gt, mask)
    assert scores["psnr"] == pytest.approx(psnr(sr, gt)) and scores["ssim"] == pytest.approx(ssim(sr, gt))
    assert scores["psnr_fg"] == pytest.approx(psnr(sr, gt, mask=mask)) and scores["ssim_fg"] == pytest.approx(
        ssim(sr, gt, mask=mask)
    )
    assert scores["psnr_fg"] < scores["psnr"]  # background is easy: masking removes the inflation


def test_body_mask_finds_the_body_and_fills_it(ct_small):
    hu = read_slices(ct_small)[0].pixels
    unit = np.clip((hu + 1024) / 4095, 0, 1)
    mask = body_mask(unit)
    assert mask[hu > -200].mean() > 0.99  # soft tissue and bone are foreground
    assert not mask[0, 0] and not mask[0, -1]  # air in the top corners is not
    head = read_slices(NIBABEL_DATA / "anatomical.nii")[12].pixels  # a crop with tissue to the edges
    assert body_mask((head - head.min()) / np.ptp(head)).mean() > 0.95
    assert body_mask(np.zeros((32, 32))).all()  # nothing stands out: score the whole image
