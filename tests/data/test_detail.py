"""The two detail scores: Equation 1 as printed, and what the authors' pre-processing code computed.

The reference for the latter is ``original_loop`` below, a plain re-statement of the original
script's per-image computation (ethanshore/SRGAN-Medical-Imaging, Preprocessing.py): an (H, W, 3)
float array, smoothed by ``scipy.ndimage.gaussian_filter`` over all three axes, then the
absolute differences between consecutive elements along the second axis, accumulated row by row,
once for the array and once for its ``np.transpose``.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from conftest import NIBABEL_DATA, pydicom_file
from medsr.data.detail import (
    SCORES,
    detail_score,
    normalised_score,
    original_code_score,
    pixel_difference_score,
    pixel_difference_score_loop,
    smooth,
)
from medsr.io import read_slices
from medsr.io.intensity import IntensityPolicy, fit_mapping


def unit_slices(path) -> np.ndarray:
    """All slices of a real file, (N, H, W) float32 in [0, 1], mapped per series as ``prepare`` does."""
    slices = read_slices(path)
    pixels = np.stack([item.pixels for item in slices])
    return fit_mapping(slices[0].meta, pixels, IntensityPolicy()).to_unit(pixels)


def original_form(gray: np.ndarray) -> np.ndarray:
    """A gray image in [0, 1] as the original script held it: three equal channels, in [-1, 1]."""
    rgb = np.repeat(np.asarray(gray, dtype=np.float64)[:, :, np.newaxis], 3, axis=2)
    return 2.0 * rgb - 1.0


def eight_bit_original_form(u8: np.ndarray) -> np.ndarray:
    """8-bit gray values loaded as the original did (gray JPEG -> RGB float array), then x / 127.5 - 1."""
    rgb = np.repeat(np.asarray(u8, dtype=np.float64)[:, :, np.newaxis], 3, axis=2)
    return rgb / 127.5 - 1.0


def _row_differences(array: np.ndarray):
    """Loop over the first axis; within each, |previous - next| along the second axis, summed."""
    accumulated = 0
    for block in array:
        for k in range(1, block.shape[0]):
            accumulated = accumulated + np.abs(block[k - 1] - block[k])
    return np.sum(accumulated)


def original_loop(rgb: np.ndarray, sigma: float = 5.0) -> float:
    """The original script's score of one (H, W, 3) image, with plain Python loops (slow)."""
    smoothed = gaussian_filter(rgb, sigma=sigma)  # all three axes, mode 'reflect', truncate 4
    return float(_row_differences(smoothed) + _row_differences(np.transpose(smoothed)))


def original_vectorised(rgb: np.ndarray, sigma: float = 5.0) -> float:
    """``original_loop`` without the loops (same 3-D filter, same two passes), for many slices."""
    smoothed = gaussian_filter(rgb, sigma=sigma)
    return sum(float(np.abs(np.diff(a, axis=1)).sum()) for a in (smoothed, np.transpose(smoothed)))


def horizontal_and_vertical(gray: np.ndarray, sigma: float) -> tuple[float, float]:
    smoothed = smooth(gray, sigma)
    return float(np.abs(np.diff(smoothed, axis=1)).sum()), float(np.abs(np.diff(smoothed, axis=0)).sum())


@pytest.fixture(scope="module")
def real_crops() -> dict[str, np.ndarray]:
    """64x64 [0, 1] crops of real slices: CT (pydicom), MR (pydicom), a NIfTI fMRI slice (nibabel)."""
    return {
        "CT_small": unit_slices(pydicom_file("CT_small.dcm"))[0][32:96, 40:104],
        "MR_small": unit_slices(pydicom_file("MR_small.dcm"))[0],
        "example4d": unit_slices(NIBABEL_DATA / "example4d.nii.gz")[10][16:80, 30:94],
    }


def test_original_code_score_by_hand():
    image = np.array([[0.0, 1.0], [2.0, 3.0]])
    # horizontal |0-1| + |2-3| = 2; x 2 ([-1, 1] scale) x 3 channels x 2 passes; no vertical term
    assert original_code_score(image, sigma=0) == 24.0
    assert original_loop(original_form(image), sigma=0) == 24.0
    assert pixel_difference_score(image, sigma=0) == 6.0
    assert original_code_score(np.zeros((3, 1)), sigma=0) == 0.0
    with pytest.raises(ValueError, match="2-D"):
        original_code_score(np.zeros((4, 4, 3)))


@pytest.mark.parametrize("name", ["CT_small", "MR_small", "example4d"])
@pytest.mark.parametrize("sigma", [5.0, 1.5])
def test_original_code_score_equals_the_original_loop_on_real_slices(real_crops, name, sigma):
    gray = real_crops[name]
    assert gray.shape == (64, 64) and gray.dtype == np.float32 and 0.0 <= gray.min() < gray.max() <= 1.0
    score = original_code_score(gray, sigma=sigma)
    assert score == pytest.approx(original_loop(original_form(gray), sigma), rel=1e-12)
    # the same image as the 8-bit JPEG the original read (values / 127.5 - 1)
    u8 = np.rint(gray.astype(np.float64) * 255.0).astype(np.uint8)
    assert original_code_score(u8 / 255.0, sigma=sigma) == pytest.approx(
        original_loop(eight_bit_original_form(u8), sigma), rel=1e-12
    )
    # any real dtype: float64 or float32 copies of the same values score the same
    assert original_code_score(gray.astype(np.float64), sigma=sigma) == score


def test_the_channel_axis_filter_changes_nothing_but_rounding(real_crops):
    rgb = original_form(real_crops["CT_small"])
    smoothed = gaussian_filter(rgb, sigma=5.0)
    spatial_only = gaussian_filter(rgb, sigma=(5.0, 5.0, 0.0))
    assert np.array_equal(smoothed[..., 0], smoothed[..., 1]) and np.array_equal(
        smoothed[..., 0], smoothed[..., 2]
    )
    np.testing.assert_allclose(smoothed, spatial_only, rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["CT_small", "MR_small", "example4d"])
def test_original_code_misses_the_vertical_term_of_equation_1(real_crops, name):
    gray = real_crops[name]
    horizontal, vertical = horizontal_and_vertical(gray, 5.0)
    equation_1 = pixel_difference_score(gray, sigma=5.0)
    original = original_code_score(gray, sigma=5.0)
    assert equation_1 == pytest.approx(horizontal + vertical, rel=1e-12)
    # 2 passes x 3 channels x 2 ([-1, 1] scale) x the horizontal term; the vertical one is absent
    assert original == pytest.approx(12.0 * horizontal, rel=1e-12)
    assert original_code_score(gray.T, sigma=5.0) == pytest.approx(12.0 * vertical, rel=1e-12)
    assert (original + original_code_score(gray.T, sigma=5.0)) / 12.0 == pytest.approx(equation_1, rel=1e-12)
    # so it is not Equation 1 in any scaling: real slices have different vertical and horizontal detail
    assert abs(vertical - horizontal) > 0.01 * equation_1
    assert original / 12.0 != pytest.approx(equation_1 / 2.0, rel=1e-3)


def test_full_ct_slice_differs_from_equation_1():
    gray = unit_slices(pydicom_file("CT_small.dcm"))[0]  # 128x128
    equation_1 = pixel_difference_score(gray)
    original = original_code_score(gray)
    assert original == pytest.approx(original_vectorised(original_form(gray)), rel=1e-12)
    # in the original's units Equation 1 would be 3 channels x 2 (scale) x (H + V); this slice has
    # about as much vertical as horizontal detail, yet the values differ by ~0.6% (486.43 vs 489.19)
    assert abs(original - 6.0 * equation_1) > 0.005 * original


@pytest.mark.parametrize(
    ("path", "expected_differences"),
    [(NIBABEL_DATA / "example4d.nii.gz", 10), (NIBABEL_DATA / "anatomical.nii", 5)],
)
def test_above_mean_rule_keeps_a_different_set_under_the_original_code_score(path, expected_differences):
    """The slices of a real volume: the keep rule (score > mean score) picks differently."""
    slices = unit_slices(path)
    equation_1 = np.array([pixel_difference_score(s) for s in slices])
    original = np.array([original_code_score(s) for s in slices])
    reference = np.array([original_vectorised(original_form(s)) for s in slices])
    np.testing.assert_allclose(original, reference, rtol=1e-12)
    keep_original = original > original.mean()
    assert np.array_equal(keep_original, reference > reference.mean())  # the original's selection, exactly
    keep_equation_1 = equation_1 > equation_1.mean()
    assert 0 < keep_original.sum() < len(slices) and 0 < keep_equation_1.sum() < len(slices)
    assert (keep_original != keep_equation_1).sum() >= expected_differences
    # and the orders themselves differ
    assert not np.array_equal(np.argsort(original, kind="stable"), np.argsort(equation_1, kind="stable"))


def test_registry_and_dispatch(real_crops):
    gray = real_crops["MR_small"]
    assert SCORES == {"equation-1": pixel_difference_score, "original-code": original_code_score}
    assert detail_score(gray, sigma=5.0) == pixel_difference_score(gray, sigma=5.0)
    assert detail_score(gray, sigma=2.0, method="equation-1") == pixel_difference_score(gray, sigma=2.0)
    assert detail_score(gray, sigma=2.0, method="original-code") == original_code_score(gray, sigma=2.0)


@pytest.mark.parametrize("method", ["equation_1", "original", "", "EQUATION-1"])
def test_unknown_method_is_rejected_naming_the_valid_ones(real_crops, method):
    with pytest.raises(ValueError, match="valid methods: 'equation-1', 'original-code'") as error:
        detail_score(real_crops["MR_small"], sigma=5.0, method=method)
    assert repr(method) in str(error.value)


def test_equation_1_by_hand():
    image = np.array([[0.0, 1.0], [2.0, 3.0]])
    # |0-1| + |2-3| + |0-2| + |1-3|
    assert pixel_difference_score(image, sigma=0) == 6.0


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (6, 1), (9, 13), (31, 24), (48, 48)])
@pytest.mark.parametrize("sigma", [0.0, 1.0, 5.0])
def test_vectorised_score_equals_the_double_loop_bit_for_bit(shape, sigma, ct_small):
    rng = np.random.default_rng(sum(shape))
    noise = rng.random(shape)
    crop = read_slices(ct_small)[0].pixels[: shape[0], : shape[1]] / 4096.0
    for image in (noise, crop, noise.astype(np.float32)):
        assert pixel_difference_score(image, sigma=sigma) == pixel_difference_score_loop(image, sigma=sigma)


def test_smoothing_suppresses_noise_but_keeps_structure(ct_small):
    ct = read_slices(ct_small)[0].pixels / 4096.0
    noise = np.random.default_rng(0).normal(0, 0.05, ct.shape)
    flat = np.full(ct.shape, 0.5)
    assert pixel_difference_score(flat + noise, sigma=0) > pixel_difference_score(ct, sigma=0)
    assert pixel_difference_score(flat + noise, sigma=5) < pixel_difference_score(ct, sigma=5)
    assert pixel_difference_score(flat, sigma=5) == pytest.approx(0.0, abs=1e-9)


def test_normalised_score_does_not_depend_on_resolution(ct_small):
    import cv2

    ct = read_slices(ct_small)[0].pixels / 4096.0
    double = cv2.resize(ct, (256, 256), interpolation=cv2.INTER_CUBIC)
    low = normalised_score(pixel_difference_score(ct, sigma=1), ct.shape)
    high = normalised_score(pixel_difference_score(double, sigma=2), double.shape)
    assert high == pytest.approx(low, rel=0.05)
    assert pixel_difference_score(double, sigma=2) == pytest.approx(
        2 * pixel_difference_score(ct, sigma=1), rel=0.05
    )
    with pytest.raises(ValueError, match="2-D"):
        pixel_difference_score(np.zeros((2, 2, 2)))
