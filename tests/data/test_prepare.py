"""``medsr prepare`` on a folder that mixes real good images with every kind of broken input."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest

from conftest import NIBABEL_DATA, pydicom_file, tree_digest, write_ct_series
from medsr.cli import main
from medsr.data import prepare as prepare_module
from medsr.data.manifest import check_dataset, mapping_of, read_manifest
from medsr.data.prepare import KeepRule, PrepareOptions, prepare
from medsr.data.split import SplitSpec
from medsr.errors import MedsrError
from medsr.io import read_slices
from medsr.io.raster import read_png16

GOOD_SLICES = 3 + 2 + 1 + 1 + 1 + 1  # two CT series, MR, MR RLE, PNG, NIfTI z-slices counted below


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """Good: two CT patients, MR (plain and RLE), a 16-bit PNG, a NIfTI volume.
    Broken: truncated DICOM, zero-byte, text named .dcm, DICOMDIR, SR, RT plan, RGB, NaN NIfTI."""
    root = tmp_path / "sources"
    write_ct_series(root / "ct" / "P1", 3, patient="P1")
    write_ct_series(root / "ct" / "P2", 2, patient="P2")
    for name in (
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_truncated.dcm",
        "test-SR.dcm",
        "rtplan.dcm",
        "SC_rgb_rle.dcm",
    ):
        shutil.copy(pydicom_file(name), root / name)
    shutil.copy(pydicom_file("dicomdirtests/DICOMDIR"), root / "DICOMDIR")
    (root / "empty.dcm").touch()
    (root / "notes.dcm").write_text("this is not DICOM")
    ct = read_slices(root / "ct" / "P1" / "1-01.dcm")[0].pixels
    cv2.imwrite(str(root / "xray.png"), np.rint((ct - ct.min()) / np.ptp(ct) * 65535).astype(np.uint16))
    anatomical = nib.load(NIBABEL_DATA / "anatomical.nii")
    shutil.copy(NIBABEL_DATA / "anatomical.nii", root / "head.nii")
    data = anatomical.get_fdata(dtype=np.float32)
    data[0, 0, 3] = np.nan
    nib.save(nib.Nifti1Image(data, anatomical.affine), root / "nan.nii.gz")
    return root


def _options(**changes) -> PrepareOptions:
    base = dict(
        size=None, min_size=16, keep=KeepRule("all"), split=SplitSpec.parse("0.5,0.25,0.25"), workers=2
    )
    base.update(changes)
    return PrepareOptions(**base)


def test_every_good_slice_is_kept_and_every_broken_file_is_listed(mixed, tmp_path):
    before = tree_digest(mixed)
    out = tmp_path / "dataset"
    result = prepare([mixed], out, _options())
    rows = read_manifest(out)
    z_head = nib.load(NIBABEL_DATA / "anatomical.nii").shape[2]
    z_nan = z_head - 1  # the slice with a NaN is refused, the others kept
    by_source = {Path(r["source"]).name for r in rows}
    assert {
        "1-01.dcm",
        "1-02.dcm",
        "1-03.dcm",
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "xray.png",
        "head.nii",
        "nan.nii.gz",
    } <= by_source
    assert len(rows) == 3 + 2 + 2 + 1 + z_head + z_nan
    skipped = {Path(row["source"]).name: row["reason"] for row in csv.DictReader(open(out / "skipped.csv"))}
    assert skipped["MR_truncated.dcm"].startswith("pixel data cannot be decoded")
    assert skipped["empty.dcm"] == "empty file (0 bytes)"
    assert skipped["notes.dcm"].startswith("not a DICOM file")
    assert skipped["DICOMDIR"].startswith("DICOMDIR")
    assert skipped["test-SR.dcm"] == "not an image (modality SR)"
    assert skipped["rtplan.dcm"] == "not an image (modality RTPLAN)"
    assert skipped["SC_rgb_rle.dcm"].startswith("colour image")
    assert skipped["nan.nii.gz#frame=3"] == "NaN/Inf values in the image"
    assert len(result.errors) == 8
    assert tree_digest(mixed) == before  # sources untouched
    assert check_dataset(out) == []


def test_slices_are_lossless_16_bit_and_map_back_to_hounsfield_units(mixed, tmp_path):
    out = tmp_path / "dataset"
    prepare([mixed / "ct"], out, _options())
    for row in read_manifest(out):
        assert row["modality"] == "CT" and row["unit"] == "HU" and row["intensity_method"] == "window"
        unit = read_png16(out / row["file"])
        original = read_slices(row["source"])[int(row["frame"])].pixels
        back = mapping_of(row).from_unit(unit)
        inside = (original >= -1024) & (original <= 3071)
        np.testing.assert_array_equal(np.rint(back[inside]), original[inside])
        assert row["detail_score"] and float(row["detail_score"]) > 0


def test_patient_level_split_has_no_leakage(mixed, tmp_path):
    out = tmp_path / "dataset"
    for seed in range(3):
        prepare(
            [mixed / "ct", mixed / "MR_small.dcm", mixed / "head.nii", mixed / "xray.png"],
            out,
            _options(seed=seed),
        )
        splits: dict[str, set[str]] = {}
        for row in read_manifest(out):
            splits.setdefault(row["patient_id"] or row["series_uid"] or row["source"], set()).add(
                row["split"]
            )
        assert all(len(s) == 1 for s in splits.values())
        assert len(splits) >= 3


def test_size_selection_and_above_mean_detail_filter(mixed, tmp_path):
    out = tmp_path / "dataset"
    prepare(
        [mixed / "ct"],
        out,
        _options(size=128, keep=KeepRule.parse("above-mean"), split=SplitSpec.parse("0.5,0.5,0")),
    )
    rows = read_manifest(out)
    info = json.loads((out / "prepare.json").read_text())
    assert info["counts"]["size_selected"] == 5 and 0 < len(rows) < 5
    scores = sorted(float(r["detail_score_norm"]) for r in rows)
    assert scores[0] > info["detail_score_norm_mean"]
    assert all(float(r["detail_score_norm"]) == pytest.approx(float(r["detail_score"]) / 128) for r in rows)
    prepare([mixed / "ct", mixed / "MR_small.dcm"], out, _options(size=64))
    skipped = {Path(r["source"]).name: r["reason"] for r in csv.DictReader(open(out / "skipped.csv"))}
    assert skipped["1-01.dcm"] == "no slice of size 64x64 (found 128x128)"
    assert [Path(r["source"]).name for r in read_manifest(out)] == ["MR_small.dcm"]
    with pytest.raises(MedsrError, match="no usable slice of size 512x512"):
        prepare([mixed / "ct"], out, _options(size=512))
    assert "no slice of size 512x512" in (out / "skipped.csv").read_text()


def test_rerun_is_idempotent_and_an_interrupted_run_leaves_no_half_slice(mixed, tmp_path, monkeypatch):
    out = tmp_path / "dataset"
    sources = [mixed / "ct", mixed / "MR_small.dcm"]
    prepare(sources, out, _options(workers=1))
    first = {p.name: p.read_bytes() for p in (out / "slices").iterdir()}
    manifest = (out / "manifest.csv").read_bytes()

    calls = {"n": 0}
    real_write = prepare_module.write_png16

    def write_then_die(path, unit, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            Path(path).with_name("." + Path(path).name + ".tmp").write_bytes(b"half")  # a partial temp file
            raise KeyboardInterrupt
        real_write(path, unit, **kwargs)

    monkeypatch.setattr(prepare_module, "write_png16", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        prepare(sources, out, _options(workers=1, sigma=2.0))
    assert not (out / "manifest.csv").exists()  # nothing trusts an unfinished data set
    assert all(p.suffix == ".png" and p.read_bytes() in first.values() for p in (out / "slices").iterdir())
    monkeypatch.setattr(prepare_module, "write_png16", real_write)

    prepare(sources, out, _options(workers=1))
    assert (out / "manifest.csv").read_bytes() == manifest
    assert {p.name: p.read_bytes() for p in (out / "slices").iterdir()} == first
    assert not (out / ".staging").exists()


def test_cli_exits_0_with_a_summary_and_no_traceback(mixed, tmp_path, capsys):
    out = tmp_path / "dataset"
    code = main(
        [
            "prepare",
            str(mixed),
            "--out",
            str(out),
            "--size",
            "any",
            "--min-size",
            "16",
            "--keep",
            "all",
            "--split",
            "0.5,0.25,0.25",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert "Traceback" not in captured.err + captured.out
    assert captured.out.count("\n") == 1 and captured.out.startswith("prepared ")
    assert "8 unreadable" in captured.out
    assert "skipped " in captured.err and "MR_truncated.dcm: pixel data cannot be decoded" in captured.err
    assert (
        main(["prepare", str(mixed), "--out", str(out), "--size", "any", "--min-size", "16", "--strict"]) == 1
    )


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["prepare", str(tmp_path / "missing"), "--out", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"medsr: error: {tmp_path / 'missing'}: no such file or folder"]
    with pytest.raises(SystemExit):
        main(["prepare", str(tmp_path), "--out", str(tmp_path / "d"), "--keep", "best"])
    assert "--keep" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sigma": -1.0}, "sigma must be a number >= 0"),
        ({"sigma": float("nan")}, "sigma must be a number >= 0"),
        ({"min_size": 0}, "min_size must be at least 1"),
        ({"workers": 0}, "workers must be at least 1"),
        (
            {"stratify": "modality", "split": SplitSpec.parse("10,5,5")},
            "stratifying needs a split given as fractions",
        ),
        ({"stratify": "patients"}, "stratify must be one of"),
        ({"score": "eq1"}, "score must be one of"),
    ],
)
def test_options_are_refused_before_any_file_is_read(tmp_path, monkeypatch, changes, message):
    def no_reading(*args, **kwargs):
        raise AssertionError("a source was read before the options were checked")

    monkeypatch.setattr(prepare_module, "_discover", no_reading)
    monkeypatch.setattr(prepare_module, "read_slices", no_reading)
    with pytest.raises(MedsrError, match=message):
        prepare([tmp_path / "missing"], tmp_path / "d", _options(**changes))
    assert not (tmp_path / "d").exists()


def test_cli_checks_options_before_looking_at_the_sources(tmp_path, capsys):
    argv = [
        "prepare",
        str(tmp_path / "missing"),
        "--out",
        str(tmp_path / "d"),
        "--stratify",
        "modality",
        "--split",
        "10,5,5",
    ]
    assert main(argv) == 1
    assert (
        capsys.readouterr().err.strip()
        == "medsr: error: stratifying needs a split given as fractions (e.g. 0.7,0.15,0.15)"
    )
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("command", ["sample-data", "fetch-tcia", "prepare", "info"])
def test_every_subcommand_has_help(command):
    done = subprocess.run([sys.executable, "-m", "medsr", command, "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "usage: medsr " + command in done.stdout


def test_info_summarises_and_checks(mixed, tmp_path, capsys):
    out = tmp_path / "dataset"
    prepare([mixed / "ct", mixed / "MR_small.dcm"], out, _options())
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no patient in two splits" in text and "CT" in text
    (out / read_manifest(out)[0]["file"]).unlink()
    assert any("missing slice file" in p for p in check_dataset(out))


def test_score_original_code_ranks_by_the_authors_score(tmp_path):
    from medsr.data.detail import original_code_score, pixel_difference_score

    write_ct_series(tmp_path / "src" / "P1", 3, patient="P1")
    for score, function in (("equation-1", pixel_difference_score), ("original-code", original_code_score)):
        out = tmp_path / score
        prepare(
            [tmp_path / "src"],
            out,
            _options(score=score, split=SplitSpec.parse("1,0,0"), keep=KeepRule.parse("top:1")),
        )
        (row,) = read_manifest(out)
        assert float(row["detail_score"]) == pytest.approx(
            function(read_png16(out / row["file"]), sigma=5.0), rel=1e-4
        )  # the PNG is the 16-bit rounding
        assert json.loads((out / "prepare.json").read_text())["options"]["score"] == score
    with pytest.raises(MedsrError, match="score must be one of"):
        prepare([tmp_path / "src"], tmp_path / "bad", _options(score="eq1"))
