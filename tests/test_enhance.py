"""``medsr enhance`` on real DICOM, NIfTI, NRRD and PNG, and tiled inference."""

from __future__ import annotations

import shutil

import cv2
import nibabel as nib
import nrrd
import numpy as np
import pydicom
import pytest
import torch

from conftest import NIBABEL_DATA, pydicom_file, tree_digest, write_ct_series
from medsr.cli import main
from medsr.enhance import enhance_paths
from medsr.errors import MedsrError
from medsr.infer import enhance_tiled, tile_count
from medsr.io import read_slices
from medsr.models import load_model
from medsr.models.arch.srresnet import SRResNet
from medsr.models.checkpoint import model_entry, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    module = SRResNet(blocks=2, channels=8)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_checkpoint(
        path,
        {
            "model": model_entry("srresnet", {"scale": 4, "blocks": 2, "channels": 8}, module),
            "config": {"name": "tiny"},
            "intensity": {"ct_window": [-1024, 3071], "percentiles": [0, 100]},
        },
    )
    return path


@pytest.mark.parametrize("name", ["bicubic", "network"])
def test_tiled_equals_whole(name, checkpoint):
    model = load_model("bicubic") if name == "bicubic" else load_model(checkpoint, device="cpu")
    rng = np.random.default_rng(0)
    lq = rng.random((90, 130)).astype(np.float32)
    whole = model.enhance(lq)
    tiled = enhance_tiled(model, lq, tile=48, blend=4)
    assert tile_count(lq.shape, 48, model.receptive_radius, 4) > 4
    assert np.abs(tiled - whole).max() < 1e-4


def test_dicom_series_becomes_a_derived_series(tmp_path, checkpoint):
    source = tmp_path / "in" / "PAT" / "series"
    write_ct_series(source, 3, patient="PAT-9")
    before = tree_digest(tmp_path / "in")
    report = enhance_paths([tmp_path / "in"], tmp_path / "out", load_model(checkpoint, device="cpu"))
    assert not report.failed and len(report.written) == 3
    assert tree_digest(tmp_path / "in") == before
    originals = sorted(source.glob("*.dcm"))
    outputs = [tmp_path / "out" / "PAT" / "series" / p.name for p in originals]
    series_uids = set()
    for original, output in zip(originals, outputs):
        a, b = pydicom.dcmread(original), pydicom.dcmread(output)
        assert (b.Rows, b.Columns) == (4 * a.Rows, 4 * a.Columns)
        assert [float(v) for v in b.PixelSpacing] == pytest.approx(
            [float(v) / 4 for v in a.PixelSpacing], rel=1e-5
        )
        assert b.SOPInstanceUID != a.SOPInstanceUID and b.SeriesInstanceUID != a.SeriesInstanceUID
        assert (b.PatientID, b.StudyInstanceUID) == (a.PatientID, a.StudyInstanceUID)
        assert list(b.ImageType[:2]) == ["DERIVED", "SECONDARY"] and "tiny" in b.DerivationDescription
        assert "SR x4" in b.SeriesDescription
        assert float(b.ImagePositionPatient[2]) == pytest.approx(float(a.ImagePositionPatient[2]))
        hu_a = a.pixel_array * float(a.RescaleSlope) + float(a.RescaleIntercept)
        hu_b = b.pixel_array * float(b.RescaleSlope) + float(b.RescaleIntercept)
        assert b.pixel_array.dtype == a.pixel_array.dtype
        assert hu_a.min() <= hu_b.min() and hu_b.max() <= hu_a.max()
        series_uids.add(b.SeriesInstanceUID)
    assert len(series_uids) == 1  # one series in, one series out


def test_bicubic_dicom_keeps_the_image(tmp_path, ct_small):
    enhance_paths([ct_small], tmp_path / "sr.dcm", load_model("bicubic"))
    out = pydicom.dcmread(tmp_path / "sr.dcm")
    hu = out.pixel_array * float(out.RescaleSlope) + float(out.RescaleIntercept)
    original = read_slices(ct_small)[0].pixels
    small = cv2.resize(hu.astype(np.float32), original.shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(small - original).mean() < 15  # HU, after a 4x round trip


def test_nifti_overlays_the_original(tmp_path):
    source = tmp_path / "head.nii"
    shutil.copy(NIBABEL_DATA / "anatomical.nii", source)
    enhance_paths([source], tmp_path / "out", load_model("bicubic"))
    a, b = nib.load(source), nib.load(tmp_path / "out" / "head.nii")
    assert b.shape == (4 * a.shape[0], 4 * a.shape[1], a.shape[2])
    assert b.get_data_dtype() == a.get_data_dtype()
    corner_a = a.affine @ np.array([-0.5, -0.5, 0, 1])
    corner_b = b.affine @ np.array([-0.5, -0.5, 0, 1])
    np.testing.assert_allclose(corner_a, corner_b, atol=1e-5)  # same field of view
    np.testing.assert_allclose(b.header.get_zooms()[:2], np.array(a.header.get_zooms()[:2]) / 4, rtol=1e-5)
    assert abs(float(np.asarray(b.dataobj).mean()) - float(np.asarray(a.dataobj).mean())) < 0.05 * float(
        np.asarray(a.dataobj).mean()
    )


def test_nrrd_and_png(tmp_path, ct_small):
    hu = read_slices(ct_small)[0].pixels.astype(np.int16)
    (tmp_path / "in").mkdir()
    nrrd.write(
        str(tmp_path / "in" / "ct.nrrd"),
        np.stack([hu.T, hu.T], axis=2),
        {
            "space": "left-posterior-superior",
            "space directions": np.diag([0.6, 0.6, 5.0]),
            "space origin": [0.0, 0.0, 0.0],
        },
    )
    cv2.imwrite(str(tmp_path / "in" / "xray.png"), ((hu - hu.min()) / np.ptp(hu) * 255).astype(np.uint8))
    report = enhance_paths([tmp_path / "in"], tmp_path / "out", load_model("bilinear"))
    assert not report.failed
    data, header = nrrd.read(str(tmp_path / "out" / "ct.nrrd"))
    assert data.shape == (512, 512, 2) and data.dtype == np.int16
    np.testing.assert_allclose(np.diag(header["space directions"])[:2], [0.15, 0.15])
    png = cv2.imread(str(tmp_path / "out" / "xray.png"), cv2.IMREAD_UNCHANGED)
    assert png.shape == (512, 512) and png.dtype == np.uint16


def test_refuses_its_input_and_reports_bad_files(tmp_path, ct_small, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(ct_small, folder / "good.dcm")
    shutil.copy(pydicom_file("MR_truncated.dcm"), folder / "bad.dcm")
    with pytest.raises(MedsrError, match="may not be an input"):
        enhance_paths([folder], folder, load_model("bicubic"))
    code = main(["enhance", str(folder), "--model", "bicubic", "-o", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1 and "failed" in captured.err and "bad.dcm" in captured.err
    assert (tmp_path / "out" / "good.dcm").is_file() and not (tmp_path / "out" / "bad.dcm").exists()
    assert captured.out.startswith("1 files written")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.json").write_text("{}")  # a sidecar is not an image
    assert main(["enhance", str(tmp_path / "empty"), "--model", "bicubic", "-o", str(tmp_path / "o2")]) == 1
    assert "no image files found" in capsys.readouterr().err


def test_cli_bf16_precision_stays_close_to_fp32(tmp_path, checkpoint):
    source = tmp_path / "in"
    write_ct_series(source, 1, patient="PAT-B")
    for precision in ("fp32", "bf16"):
        code = main(
            [
                "enhance",
                str(source),
                "--model",
                str(checkpoint),
                "-o",
                str(tmp_path / precision),
                "--device",
                "cpu",
                "--precision",
                precision,
            ]
        )
        assert code == 0
    exact, low = (pydicom.dcmread(next((tmp_path / p).rglob("*.dcm"))) for p in ("fp32", "bf16"))
    hu_exact, hu_low = (
        ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in (exact, low)
    )
    assert exact.pixel_array.shape == low.pixel_array.shape
    # 0.2% of the 4095 HU training window (bf16 has an 8-bit mantissa), and not bit-equal
    assert 0 < np.abs(hu_low - hu_exact).max() < 0.002 * 4095 * 2


def test_several_file_inputs_land_side_by_side_and_folders_keep_their_tree(tmp_path, capsys):
    image = (np.arange(48 * 40) % 251).astype(np.uint8).reshape(48, 40)
    for name in ("a.png", "b.png", "tree/sub/c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / name), image)
    out = tmp_path / "out"
    code = main(
        [
            "enhance",
            str(tmp_path / "a.png"),
            str(tmp_path / "b.png"),
            str(tmp_path / "tree"),
            "--model",
            "bicubic",
            "-o",
            str(out),
        ]
    )
    assert code == 0 and capsys.readouterr().out.startswith("3 files written")
    written = (p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert sorted(p for p in written if not p.startswith(".medsr-enhance/")) == [
        "a.png",
        "b.png",
        "tree/sub/c.png",
    ]
    assert cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED).shape == (4 * 48, 4 * 40)
    assert (
        main(["enhance", str(tmp_path / "a.png"), "--model", "bicubic", "-o", str(tmp_path / "single.png")])
        == 0
    )
    assert (tmp_path / "single.png").is_file()
    assert (
        main(["enhance", str(tmp_path / "a.png"), "--model", "bicubic", "-o", str(tmp_path / "folder")]) == 0
    )
    assert (tmp_path / "folder" / "a.png").is_file()


def test_two_inputs_with_the_same_name_are_refused_before_writing(tmp_path):
    for folder in ("x", "y"):
        (tmp_path / folder).mkdir()
        cv2.imwrite(str(tmp_path / folder / "a.png"), np.zeros((16, 16), np.uint8))
    with pytest.raises(MedsrError, match="would both be written to"):
        enhance_paths(
            [tmp_path / "x" / "a.png", tmp_path / "y" / "a.png"], tmp_path / "out", load_model("bicubic")
        )
    assert not (tmp_path / "out").exists()


def _big_endian(source, path):
    ds = pydicom.dcmread(source)
    pixels = ds.pixel_array
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRBigEndian
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return path


def test_big_endian_dicom_is_enhanced_into_little_endian(tmp_path, ct_small):
    """A big-endian source used to fail ('save_as() cannot be used to convert between little and
    big endian encoding'), so nothing was written for it."""
    folder = tmp_path / "in"
    folder.mkdir()
    _big_endian(ct_small, folder / "ct.dcm")
    shutil.copy(pydicom_file("MR_small_bigendian.dcm"), folder / "mr.dcm")
    report = enhance_paths([folder], tmp_path / "out", load_model("bicubic"))
    assert not report.failed and len(report.written) == 2
    for name in ("ct.dcm", "mr.dcm"):
        (original,), (sr,) = read_slices(folder / name), read_slices(tmp_path / "out" / name)
        assert (
            pydicom.dcmread(tmp_path / "out" / name).file_meta.TransferSyntaxUID
            == pydicom.uid.ExplicitVRLittleEndian
        )
        small = cv2.resize(sr.pixels, original.shape[::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(small - original.pixels).mean() < 0.02 * np.ptp(
            original.pixels
        )  # not byte-swapped noise
