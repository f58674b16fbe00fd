from __future__ import annotations

import cv2
import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest

from conftest import NIBABEL_DATA
from medsr.errors import UnreadableImage
from medsr.io import detect_format, read_slices
from medsr.io.raster import read_png16, write_png16


def test_nifti_3d_slices_along_each_axis_with_header_spacing():
    image = nib.as_closest_canonical(nib.load(NIBABEL_DATA / "anatomical.nii"))
    shape, zooms = image.shape, image.header.get_zooms()
    axial = read_slices(NIBABEL_DATA / "anatomical.nii", axes=("axial",))
    assert len(axial) == shape[2]
    assert axial[0].shape == (shape[1], shape[0])  # rotated so that anterior is up
    assert axial[0].meta.pixel_spacing == pytest.approx((zooms[1], zooms[0]))
    data = image.get_fdata(dtype=np.float32)
    np.testing.assert_array_equal(axial[5].pixels, np.rot90(data[:, :, 5]))
    every = read_slices(NIBABEL_DATA / "anatomical.nii", axes=("sagittal", "coronal", "axial"))
    assert len(every) == sum(shape)
    assert {s.meta.extra["axis"] for s in every} == {"sagittal", "coronal", "axial"}
    assert len({s.meta.frame for s in every}) == len(every)


def test_nifti_4d_gives_slices_of_every_volume():
    image = nib.load(NIBABEL_DATA / "example4d.nii.gz")
    slices = read_slices(NIBABEL_DATA / "example4d.nii.gz")
    x, y, z, t = nib.as_closest_canonical(image).shape
    assert len(slices) == z * t
    assert {s.meta.extra["volume"] for s in slices} == {str(v) for v in range(t)}


def test_nrrd_ct_volume_round_trip_keeps_hounsfield_units(tmp_path, ct_small):
    ds = pydicom.dcmread(ct_small)
    hu = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.int16)
    volume = np.stack([hu.T, np.roll(hu, 5, axis=0).T], axis=2)  # (x, y, z) as pynrrd indexes
    header = {
        "space": "left-posterior-superior",
        "space directions": np.diag([0.66, 0.66, 5.0]),
        "space origin": [0, 0, 0],
    }
    path = tmp_path / "ct.nrrd"
    nrrd.write(str(path), volume, header)
    (path.with_suffix(".json")).write_text('{"Modality": "CT", "PatientID": "nrrd-patient"}')
    slices = read_slices(path)
    assert len(slices) == 2
    assert slices[0].meta.modality == "CT" and slices[0].meta.unit == "HU"
    assert slices[0].meta.patient_id == "nrrd-patient"
    assert slices[0].meta.pixel_spacing == pytest.approx((0.66, 0.66))
    assert sorted(np.unique(slices[0].pixels)) == sorted(np.unique(hu.astype(np.float32)))


@pytest.mark.parametrize(
    ("suffix", "dtype"), [(".png", np.uint8), (".png", np.uint16), (".tif", np.uint8), (".tif", np.uint16)]
)
def test_png_and_tiff_8_and_16_bit_keep_their_values_and_dtype_range(tmp_path, ct_small, suffix, dtype):
    pixels = pydicom.dcmread(ct_small).pixel_array.astype(np.float64)
    scaled = (pixels - pixels.min()) / (pixels.max() - pixels.min()) * np.iinfo(dtype).max
    image = np.rint(scaled).astype(dtype)
    path = tmp_path / f"ct{suffix}"
    assert cv2.imwrite(str(path), image)
    (item,) = read_slices(path)
    np.testing.assert_array_equal(item.pixels, image.astype(np.float32))
    assert item.meta.fixed_range == (0.0, float(np.iinfo(dtype).max))


def test_colour_png_is_refused_but_grayscale_saved_as_rgb_is_read(tmp_path, ct_small):
    gray = (pydicom.dcmread(ct_small).pixel_array // 16).astype(np.uint8)
    as_rgb = tmp_path / "gray_rgb.png"
    cv2.imwrite(str(as_rgb), np.dstack([gray, gray, gray]))
    (item,) = read_slices(as_rgb)
    np.testing.assert_array_equal(item.pixels, gray.astype(np.float32))
    colour = tmp_path / "colour.png"
    cv2.imwrite(str(colour), np.dstack([gray, gray[::-1], gray]))
    with pytest.raises(UnreadableImage, match="colour image"):
        read_slices(colour)


def test_png16_writer_is_lossless_at_16_bits(tmp_path):
    levels = np.arange(65536, dtype=np.float64).reshape(256, 256) / 65535
    path = tmp_path / "levels.png"
    write_png16(path, levels)
    np.testing.assert_array_equal(read_png16(path), levels.astype(np.float32))
    assert detect_format(path) == "raster"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_corrupt_gzip_and_truncated_nifti_are_refused(tmp_path):
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes((NIBABEL_DATA / "example4d.nii.gz").read_bytes()[:2000])
    with pytest.raises(UnreadableImage):
        read_slices(broken)
