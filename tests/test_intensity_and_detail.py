from __future__ import annotations

import numpy as np
import pydicom
import pytest

from medsr.data import pixel_difference_score
from medsr.data.detail import normalised_score, pixel_difference_score_loop
from medsr.io import read_slices
from medsr.io.intensity import CT_FULL_RANGE, IntensityPolicy, fit_mapping
from medsr.io.raster import PNG16_MAX, quantize_png16
from medsr.io.types import IntensityMapping


def test_ct_maps_to_unit_and_back_to_the_exact_stored_values(ct_small):
    (item,) = read_slices(ct_small)
    mapping = fit_mapping(item.meta, item.pixels, IntensityPolicy())
    assert (mapping.lo, mapping.hi) == CT_FULL_RANGE and mapping.method == "window"
    stored16 = quantize_png16(mapping.to_unit(item.pixels))
    hu = mapping.from_unit(stored16 / PNG16_MAX)
    ds = pydicom.dcmread(ct_small)
    stored = np.rint((hu - float(ds.RescaleIntercept)) / float(ds.RescaleSlope))
    inside = (item.pixels >= CT_FULL_RANGE[0]) & (item.pixels <= CT_FULL_RANGE[1])
    assert inside.mean() > 0.99
    np.testing.assert_array_equal(stored[inside], ds.pixel_array[inside])


def test_mr_percentiles_are_per_series_and_lossless_by_default(mr_small):
    (item,) = read_slices(mr_small)
    mapping = fit_mapping(item.meta, item.pixels, IntensityPolicy())
    assert (mapping.lo, mapping.hi) == (item.pixels.min(), item.pixels.max())
    clipped = fit_mapping(item.meta, item.pixels, IntensityPolicy(percentiles=(1.0, 99.0)))
    assert clipped.lo == pytest.approx(np.percentile(item.pixels, 1)) and clipped.params == "p1-99"
    unit = mapping.to_unit(item.pixels)
    assert unit.min() == 0.0 and unit.max() == 1.0


def test_mapping_rejects_an_empty_window():
    with pytest.raises(ValueError, match="lo < hi"):
        IntensityMapping(5.0, 5.0, "window")
    with pytest.raises(ValueError, match="percentiles"):
        IntensityPolicy(percentiles=(50.0, 10.0))


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
