"""``medsr.io.write_like``: every format's writer, read back with medsr's own readers."""

from __future__ import annotations

import ast
import inspect

import cv2
import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian

import medsr.io.dicom_write
from conftest import NIBABEL_DATA, pydicom_file
from medsr.errors import UnreadableImage
from medsr.io import read_slices, read_volume, write_like
from medsr.io.intensity import fit_mapping
from medsr.models import load_model

SCALE = 4


def big_endian_ct(path):
    """pydicom's CT_small.dcm re-encoded as Explicit VR Big Endian (same HU)."""
    ds = pydicom.dcmread(pydicom_file("CT_small.dcm"))
    pixels = ds.pixel_array
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def bicubic_physical(item) -> np.ndarray:
    """What ``medsr enhance`` hands the writer: the bicubic x4 output mapped back to the source's
    physical units and kept inside the source's value range, float32 (4H, 4W)."""
    mapping = fit_mapping(item.meta, item.pixels)
    sr = mapping.from_unit(load_model("bicubic").enhance(mapping.to_unit(item.pixels))).astype(np.float32)
    return np.clip(sr, item.pixels.min(), item.pixels.max())


DICOM_SOURCES = {
    "explicit little endian CT": "CT_small.dcm",
    "big endian CT": None,  # made by big_endian_ct
    "big endian MR": "MR_small_bigendian.dcm",
    "implicit VR MR": "MR_small_implicit.dcm",
    "JPEG 2000 lossless MR": "MR_small_jp2klossless.dcm",
    "JPEG 2000 CT": "693_J2KI.dcm",
    "JPEG-LS lossless MR": "MR_small_jpeg_ls_lossless.dcm",
}


@pytest.mark.parametrize("case", list(DICOM_SOURCES))
def test_derived_dicom_from_any_transfer_syntax_reads_back_with_geometry_and_values(tmp_path, case):
    name = DICOM_SOURCES[case]
    source = pydicom_file(name) if name else big_endian_ct(tmp_path / "ct_big_endian.dcm")
    (item,) = read_slices(source)
    physical = bicubic_physical(item)
    target = tmp_path / "out" / "sr.dcm"
    write_like(source, [physical], target, scale=SCALE, model_name="bicubic")

    (back,) = read_slices(target)
    assert back.shape == (SCALE * item.shape[0], SCALE * item.shape[1])
    assert back.meta.pixel_spacing == pytest.approx(
        tuple(v / SCALE for v in item.meta.pixel_spacing), rel=1e-5
    )
    assert back.meta.position == pytest.approx(item.meta.position, abs=1e-4)  # same plane
    assert (back.meta.modality, back.meta.unit, back.meta.patient_id) == (
        item.meta.modality,
        item.meta.unit,
        item.meta.patient_id,
    )
    assert back.meta.series_uid != item.meta.series_uid
    slope = back.meta.rescale_slope
    assert np.abs(back.pixels - physical).max() <= 0.5 * slope + 1e-3  # stored integers, rounded once

    written, original = pydicom.dcmread(target), pydicom.dcmread(source, stop_before_pixels=True)
    assert written.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert written.pixel_array.dtype.itemsize == 2 and written.BitsStored == original.BitsStored
    rows, columns = (float(v) for v in original.PixelSpacing)
    iop = np.asarray(original.ImageOrientationPatient, float)
    first_pixel_centre = np.asarray(original.ImagePositionPatient, float) - (1 - 1 / SCALE) / 2 * (
        columns * iop[:3] + rows * iop[3:]
    )
    np.testing.assert_allclose(np.asarray(written.ImagePositionPatient, float), first_pixel_centre, atol=1e-5)


def test_a_failing_dicom_write_keeps_the_old_file(tmp_path, ct_small, monkeypatch):
    (item,) = read_slices(ct_small)
    target = tmp_path / "sr.dcm"
    write_like(ct_small, [bicubic_physical(item)], target, scale=SCALE)
    before = target.read_bytes()

    def write_half_then_fail(path, *args, **kwargs):
        open(path, "wb").write(b"DICM half")
        raise OSError("disk full")

    monkeypatch.setattr(pydicom, "dcmwrite", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_like(ct_small, [bicubic_physical(item)], target, scale=SCALE)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sr.dcm"]


def test_dicom_frames_of_the_wrong_size_are_refused(tmp_path, ct_small):
    with pytest.raises(ValueError, match=r"expected frames of shape \(512, 512\)"):
        write_like(ct_small, [np.zeros((256, 256), np.float32)], tmp_path / "sr.dcm", scale=SCALE)
    assert not list(tmp_path.iterdir())


def test_the_dicom_writer_uses_no_private_helper_of_the_reader():
    tree = ast.parse(inspect.getsource(medsr.io.dicom_write))
    imported = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medsr.io")
        for alias in node.names
    ]
    assert "frame_rescale" in imported and not [name for name in imported if name.startswith("_")]


def test_nifti_is_written_in_the_source_type_with_a_finer_affine(tmp_path):
    source = NIBABEL_DATA / "anatomical.nii"
    volume = read_volume(source)
    up = np.kron(volume.data, np.ones((2, 2, 1), np.float32))  # nearest-neighbour x2 in-plane
    write_like(source, up, tmp_path / "up.nii.gz", scale=2)
    a, b = nib.load(source), nib.load(tmp_path / "up.nii.gz")
    assert b.get_data_dtype() == a.get_data_dtype() and b.shape == up.shape
    np.testing.assert_allclose(read_volume(tmp_path / "up.nii.gz").data, up, atol=1e-3)
    np.testing.assert_allclose(b.affine @ [-0.5, -0.5, 0, 1], a.affine @ [-0.5, -0.5, 0, 1], atol=1e-5)
    for name in ("qform", "sform"):  # the same codes, both transforms on the finer grid
        assert int(b.header[f"{name}_code"]) == int(a.header[f"{name}_code"])
        np.testing.assert_allclose(
            getattr(b.header, f"get_{name}")() @ [1, 1, 0, 1], b.affine @ [1, 1, 0, 1], atol=1e-4
        )
    assert b.header.get_zooms()[:2] == pytest.approx([z / 2 for z in a.header.get_zooms()[:2]])
    assert read_slices(tmp_path / "up.nii.gz")[0].meta.pixel_spacing == pytest.approx(
        tuple(v / 2 for v in read_slices(source)[0].meta.pixel_spacing)
    )
    with pytest.raises(ValueError, match="expected a volume of shape"):
        write_like(source, volume.data, tmp_path / "same.nii", scale=2)


def test_nifti_keeps_the_source_scaling_of_integer_data(tmp_path):
    image = nib.Nifti1Image(np.arange(2, 50, dtype=np.int16).reshape(4, 4, 3), np.eye(4))
    image.header.set_slope_inter(0.5, 10)  # stored 2 .. 49 -> 11 .. 34.5 in half steps
    nib.save(image, tmp_path / "scaled.nii")
    values = read_volume(tmp_path / "scaled.nii").data
    assert values.min() == 11 and values.max() == 34.5
    write_like(
        tmp_path / "scaled.nii", np.kron(values, np.ones((2, 2, 1), np.float32)), tmp_path / "up.nii", scale=2
    )
    out = nib.load(tmp_path / "up.nii")
    assert out.get_data_dtype() == np.int16 and (out.dataobj.slope, out.dataobj.inter) == (0.5, 10)
    np.testing.assert_array_equal(read_volume(tmp_path / "up.nii").data[::2, ::2], values)  # half steps kept


def test_nifti_qform_and_sform_that_differ_are_each_made_finer(tmp_path):
    from medsr.io.nifti import finer_affine

    qform = np.array([[0.9, 0.1, 0, -10], [-0.1, 0.9, 0, 20], [0, 0, 3.0, 5], [0, 0, 0, 1]])
    sform = np.diag([0.8, 0.8, 3.0, 1.0])
    image = nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), None)
    image.set_qform(qform, code=1)
    image.set_sform(sform, code=2)
    nib.save(image, tmp_path / "two.nii")
    write_like(tmp_path / "two.nii", np.zeros((16, 16, 4), np.float32), tmp_path / "up.nii", scale=2)
    out = nib.load(tmp_path / "up.nii").header
    np.testing.assert_allclose(out.get_qform(), finer_affine(image.header.get_qform(), (2, 2)), atol=1e-5)
    np.testing.assert_allclose(out.get_sform(), finer_affine(sform, (2, 2)), atol=1e-5)
    assert (int(out["qform_code"]), int(out["sform_code"])) == (1, 2)


def test_nrrd_is_written_in_the_source_type_with_finer_space_directions(tmp_path, ct_small):
    hu = read_slices(ct_small)[0].pixels.astype(np.int16)
    source = tmp_path / "ct.nrrd"
    nrrd.write(
        str(source),
        np.stack([hu.T, hu.T[::-1]], axis=2),
        {
            "space": "left-posterior-superior",
            "space directions": np.diag([0.6, 0.6, 5.0]),
            "space origin": [10.0, 20.0, 30.0],
        },
    )
    volume = read_volume(source)
    assert (
        volume.meta.format == "nrrd"
        and volume.data.dtype == np.float32
        and volume.data.shape == (128, 128, 2)
    )
    up = np.kron(volume.data, np.ones((2, 2, 1), np.float32)) + 0.25  # rounds back to the same integers
    write_like(source, up, tmp_path / "out" / "up.nrrd", scale=2)
    data, header = nrrd.read(str(tmp_path / "out" / "up.nrrd"))
    assert data.dtype == np.int16
    np.testing.assert_array_equal(data, np.kron(volume.data, np.ones((2, 2, 1))).astype(np.int16))
    np.testing.assert_allclose(header["space directions"], np.diag([0.3, 0.3, 5.0]))
    np.testing.assert_allclose(header["space origin"], [10.0 - 0.15, 20.0 - 0.15, 30.0])


def test_nrrd_without_an_origin_gets_the_finer_grid_s_and_loses_stale_thicknesses(tmp_path):
    source = tmp_path / "no-origin.nrrd"
    header = {
        "space": "RAS",
        "space directions": np.diag([0.6, 0.6, 5.0]),
        "thicknesses": [np.nan, np.nan, 5.0],
    }
    nrrd.write(str(source), np.zeros((4, 4, 3), np.int16), header)
    write_like(source, np.zeros((8, 8, 3), np.float32), tmp_path / "up.nrrd", scale=2)
    written = nrrd.read_header(str(tmp_path / "up.nrrd"))
    np.testing.assert_allclose(written["space origin"], [-0.15, -0.15, 0.0])  # the source's origin is 0
    assert np.isnan(written["thicknesses"][:2]).all() and written["thicknesses"][2] == 5.0


def test_raster_pages_become_16_bit_png_or_multipage_tiff(tmp_path):
    source = tmp_path / "page.png"
    cv2.imwrite(str(source), np.arange(64, dtype=np.uint8).reshape(8, 8))
    pages = [np.linspace(0, 1, 256 * 256).reshape(256, 256), np.full((256, 256), 0.5)]
    write_like(source, pages, tmp_path / "two.tif", scale=SCALE)
    back = read_slices(tmp_path / "two.tif")
    assert [s.meta.stored_dtype for s in back] == ["uint16", "uint16"]
    for item, page in zip(back, pages):
        np.testing.assert_array_equal(item.pixels, np.rint(page * 65535).astype(np.float32))
    write_like(source, iter(pages), tmp_path / "scan", scale=SCALE)  # no extension: a PNG
    (item,) = read_slices(tmp_path / "scan")
    assert item.meta.stored_dtype == "uint16" and item.shape == (256, 256)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_unknown_sources_are_refused_with_a_reason(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(UnreadableImage, match="not a recognised image format"):
        write_like(text, [np.zeros((4, 4))], tmp_path / "out.png", scale=SCALE)
    png = tmp_path / "image.png"
    cv2.imwrite(str(png), np.zeros((4, 4), np.uint8))
    with pytest.raises(UnreadableImage, match="not a NIfTI or NRRD volume"):
        read_volume(png)
