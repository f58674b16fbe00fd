from __future__ import annotations

import numpy as np
import pydicom
import pytest

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
