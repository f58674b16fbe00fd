from __future__ import annotations

import re
import shutil

import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from conftest import pydicom_file, write_ct_series
from medsr.errors import UnreadableImage
from medsr.io import detect_format, iter_image_files, read_slices
from medsr.io.intensity import IntensityPolicy, fit_mapping


def test_ct_is_returned_in_hounsfield_units(ct_small):
    (item,) = read_slices(ct_small)
    ds = pydicom.dcmread(ct_small)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert item.pixels.dtype == np.float32 and item.pixels.shape == (128, 128)
    np.testing.assert_array_equal(item.pixels, expected.astype(np.float32))
    assert item.meta.unit == "HU" and item.meta.modality == "CT"
    assert item.meta.patient_id == ds.PatientID
    assert item.meta.series_uid == ds.SeriesInstanceUID and item.meta.study_uid == ds.StudyInstanceUID
    assert item.meta.pixel_spacing == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_bigendian.dcm",
    ],
)
def test_compressed_transfer_syntaxes_decode_to_the_same_pixels(name, mr_small):
    (reference,) = read_slices(mr_small)
    (item,) = read_slices(pydicom_file(name))
    np.testing.assert_array_equal(item.pixels, reference.pixels)


def test_lossy_jpeg_extended_decodes():
    (item,) = read_slices(pydicom_file("JPGExtended.dcm"))
    assert item.shape == (1024, 256)
    assert 0 <= item.pixels.min() < item.pixels.max() <= 4095


def test_multiframe_is_split_into_frames(tmp_path, mr_small):
    ds = pydicom.dcmread(mr_small)
    frame = ds.pixel_array
    frames = np.stack([frame, frame[::-1], frame[:, ::-1]])
    ds.NumberOfFrames = 3
    ds.PixelData = frames.tobytes()
    path = tmp_path / "multi.dcm"
    ds.save_as(path, enforce_file_format=True)
    slices = read_slices(path)
    assert [s.meta.frame for s in slices] == [0, 1, 2]
    for item, frame in zip(slices, frames):
        np.testing.assert_array_equal(item.pixels, frame.astype(np.float32))


def test_monochrome1_is_inverted_by_the_intensity_mapping(tmp_path, mr_small):
    ds = pydicom.dcmread(mr_small)
    ds.PhotometricInterpretation = "MONOCHROME1"
    path = tmp_path / "mono1.dcm"
    ds.save_as(path, enforce_file_format=True)
    (item,) = read_slices(path)
    assert item.meta.photometric == "MONOCHROME1"
    mapping = fit_mapping(item.meta, item.pixels, IntensityPolicy())
    unit = mapping.to_unit(item.pixels)
    brightest_stored = np.unravel_index(np.argmax(item.pixels), item.pixels.shape)
    assert mapping.invert and unit[brightest_stored] == 0.0  # high stored value = dark on screen
    np.testing.assert_array_equal(np.rint(mapping.from_unit(unit)), item.pixels)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", "pixel data cannot be decoded"),
        ("test-SR.dcm", "not an image (modality SR)"),
        ("rtplan.dcm", "not an image (modality RTPLAN)"),
        ("rtdose.dcm", "not an image (modality RTDOSE)"),
        ("SC_rgb_rle.dcm", "colour image (RGB"),
        ("examples_palette.dcm", "colour image (PALETTE COLOR"),
        ("dicomdirtests/DICOMDIR", "DICOMDIR"),
    ],
)
def test_unusable_dicom_is_refused_with_a_reason(name, reason):
    with pytest.raises(UnreadableImage, match=re.escape(reason)):
        read_slices(pydicom_file(name))


def test_format_is_detected_from_content_not_extension(tmp_path, ct_small):
    disguised = tmp_path / "scan.png"
    shutil.copy(ct_small, disguised)
    assert detect_format(disguised) == "dicom"
    (item,) = read_slices(disguised)
    assert item.meta.modality == "CT"
    text = tmp_path / "notes.dcm"
    text.write_text("not an image")
    with pytest.raises(UnreadableImage, match="not a DICOM file"):
        read_slices(text)
    empty = tmp_path / "empty.dcm"
    empty.touch()
    with pytest.raises(UnreadableImage, match="empty file"):
        read_slices(empty)


def test_nested_series_tree_is_walked_like_tcia_writes_it(tmp_path):
    root = tmp_path / "CPTAC-GBM"
    write_ct_series(root / "PAT-1" / "1.2.3" / "1.2.3.4", 3, patient="PAT-1")
    write_ct_series(root / "PAT-2" / "1.2.5" / "1.2.5.6", 2, patient="PAT-2")
    (root / "PAT-1" / "LICENSE").write_text("CC BY 3.0")
    files = list(iter_image_files([root]))
    assert len(files) == 5 and all(f.suffix == ".dcm" for f in files)
    patients = sorted({read_slices(f)[0].meta.patient_id for f in files})
    assert patients == ["PAT-1", "PAT-2"]


def test_enhanced_ct_rescale_from_functional_groups(tmp_path, ct_small):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(ct_small)
    stored = ds.pixel_array
    del ds.RescaleSlope, ds.RescaleIntercept
    transform = Dataset()
    transform.RescaleSlope = "2"
    transform.RescaleIntercept = "-1000"
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([transform])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    (item,) = read_slices(path)
    np.testing.assert_array_equal(item.pixels, (stored * 2.0 - 1000).astype(np.float32))


def test_jpeg_baseline_8_bit_decodes(tmp_path, ct_small):
    import cv2
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    ds = pydicom.dcmread(ct_small)
    pixels = ds.pixel_array.astype(np.float64)
    gray = np.rint((pixels - pixels.min()) / np.ptp(pixels) * 255).astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", gray, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ds.PixelData = encapsulate([encoded.tobytes()])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds["PixelData"].VR = "OB"
    ds.RescaleIntercept, ds.RescaleSlope = 0, 1
    path = tmp_path / "jpeg_baseline.dcm"
    ds.save_as(path, enforce_file_format=True)
    (item,) = read_slices(path)
    reference = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED).astype(np.float32)
    assert np.abs(item.pixels - reference).max() <= 2  # two JPEG decoders agree to rounding
    assert np.abs(item.pixels - gray).mean() < 3  # and the lossy image is close to the original
