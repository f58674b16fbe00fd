"""Patients of files without metadata: folders, not file stems; a rule to choose; a warning."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import NIBABEL_DATA, pydicom_file
from medsr.cli import main
from medsr.data.manifest import read_manifest, summarize
from medsr.data.patients import PatientRule
from medsr.data.prepare import KeepRule, PrepareOptions, prepare
from medsr.data.split import SplitSpec
from medsr.io import read_slices
from medsr.io.types import SliceMeta


def _real_slices(count: int) -> list[np.ndarray]:
    """``count`` real MR slices (nibabel's example4d, 128 x 96) as 16-bit images."""
    slices = [s.pixels for s in read_slices(NIBABEL_DATA / "example4d.nii.gz")[:count]]
    return [np.rint((p - p.min()) / max(np.ptp(p), 1e-6) * 65535).astype(np.uint16) for p in slices]


@pytest.fixture
def two_people(tmp_path: Path) -> Path:
    """The reviewer's case: 16 PNG slices of 2 people, 8 in person_a/ and 8 in person_b/."""
    root = tmp_path / "pngs"
    for index, image in enumerate(_real_slices(16)):
        folder = root / ("person_a" if index < 8 else "person_b")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"slice_{index % 8:02d}.png"), image)
    return root


def _prepare(sources, out, **changes):
    options = dict(
        size=None, min_size=16, keep=KeepRule("all"), split=SplitSpec.parse("0.5,0.5,0"), workers=1
    )
    options.update(changes)
    return prepare(sources if isinstance(sources, list) else [sources], out, PrepareOptions(**options))


def _splits_of(dataset: Path) -> dict[str, set[str]]:
    splits = defaultdict(set)
    for row in read_manifest(dataset):
        splits[row["patient_id"]].add(row["split"])
    return dict(splits)


def test_the_folder_is_the_patient_of_files_without_an_id(two_people, tmp_path):
    result = _prepare(two_people, tmp_path / "d")
    splits = _splits_of(tmp_path / "d")
    assert set(splits) == {"person_a", "person_b"}  # not 16 "patients"
    assert all(len(s) == 1 for s in splits.values())  # each person's slices in one split
    assert {row["patient_from"] for row in read_manifest(tmp_path / "d")} == {"folder"}
    assert not result.warnings


def test_same_stem_in_different_folders_is_never_merged(tmp_path):
    for person in ("a", "b"):
        (tmp_path / "src" / person).mkdir(parents=True)
        shutil.copy(NIBABEL_DATA / "example4d.nii.gz", tmp_path / "src" / person / "scan.nii.gz")
    _prepare(tmp_path / "src", tmp_path / "d")
    assert set(_splits_of(tmp_path / "d")) == {"a", "b"}


def test_every_image_its_own_patient_is_warned_about(two_people, tmp_path, capsys):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in two_people.rglob("*.png"):
        shutil.copy(path, flat / f"{path.parent.name}_{path.name}")
    result = _prepare(flat, tmp_path / "d")
    assert (
        len(_splits_of(tmp_path / "d")) == 16
        and "every one of the 16 images is its own patient" in result.warnings[0]
    )
    assert (
        main(
            [
                "prepare",
                str(flat),
                "--out",
                str(tmp_path / "cli"),
                "--size",
                "any",
                "--min-size",
                "16",
                "--keep",
                "all",
            ]
        )
        == 0
    )
    assert "warning: every one of the 16 images is its own patient" in capsys.readouterr().err
    assert json.loads((tmp_path / "cli" / "prepare.json").read_text())["warnings"]
    # the regex rule recovers the people from the file names
    _prepare(flat, tmp_path / "re", patients=PatientRule.parse(r"regex:^(person_[ab])_"))
    assert set(_splits_of(tmp_path / "re")) == {"person_a", "person_b"}


def test_rules_file_folder_dicom_and_their_errors(two_people, tmp_path):
    _prepare(two_people, tmp_path / "file", patients=PatientRule("file"))
    assert len(_splits_of(tmp_path / "file")) == 16
    assert "person_a/slice_00.png" in _splits_of(tmp_path / "file")
    dicom = tmp_path / "mixed"
    shutil.copytree(two_people, dicom)
    shutil.copy(pydicom_file("CT_small.dcm"), dicom / "ct.dcm")
    result = _prepare(
        dicom, tmp_path / "dicom", patients=PatientRule("dicom"), split=SplitSpec.parse("1,0,0")
    )
    stored = read_slices(pydicom_file("CT_small.dcm"))[0].meta.patient_id
    assert set(_splits_of(tmp_path / "dicom")) == {stored}  # PNGs without an id are skipped, with the reason
    assert sum("no patient id stored" in row["reason"] for row in result.skipped) == 16
    _prepare(dicom, tmp_path / "folder", patients=PatientRule("folder"))
    assert set(_splits_of(tmp_path / "folder")) == {
        "person_a",
        "person_b",
        "mixed",
    }  # the DICOM id is ignored
    for bad in ("regex:(", "regex:", "stem", "folder:x"):
        with pytest.raises(ValueError, match="patient id"):
            PatientRule.parse(bad)
    with pytest.raises(SystemExit, match="2"):
        main(["prepare", str(two_people), "--out", str(tmp_path / "x"), "--patient-id", "regex:("])


def test_bids_subject_folders_and_sidecar_ids_win_over_folders(tmp_path):
    rule, root = PatientRule(), tmp_path
    meta = SliceMeta(source="x", format="nifti")
    assert rule.resolve(meta, root / "sub-07" / "anat" / "t1.nii.gz", root) == ("sub-07", "bids")
    assert rule.resolve(meta, root / "site" / "t1.nii.gz", root) == ("site", "folder")
    assert rule.resolve(meta, root / "t1.nii.gz", root) == ("t1.nii.gz", "file")
    meta.patient_id = "ID-1"
    assert rule.resolve(meta, root / "site" / "t1.nii.gz", root) == ("ID-1", "sidecar")


def test_info_shows_slices_per_patient(two_people, tmp_path, capsys):
    _prepare(two_people, tmp_path / "d")
    text = summarize(tmp_path / "d")
    assert "8-8-8" in text  # fewest-median-most slices per patient in a split
    assert any(
        line.startswith("person_a ") and " 8 " in line and "folder" in line for line in text.splitlines()
    )
    assert main(["info", str(tmp_path / "d")]) == 0 and "person_b" in capsys.readouterr().out


def test_fraction_splits_stratify_by_modality_when_there_are_several(tmp_path):
    root = tmp_path / "src"
    for index in range(4):
        folder = root / f"ct{index}"
        folder.mkdir(parents=True)
        shutil.copy(pydicom_file("CT_small.dcm"), folder / "a.dcm")
    result = _prepare(
        [root, NIBABEL_DATA / "example4d.nii.gz"],
        tmp_path / "d",
        patients=PatientRule("folder"),
        split=SplitSpec.parse("0.5,0.5,0"),
    )
    info = json.loads((tmp_path / "d" / "prepare.json").read_text())
    assert info["options"]["stratify"] == "auto" and info["stratified_by_modality"] is True
    assert result.records


def test_linked_files_keep_the_folder_they_are_linked_from(two_people, tmp_path):
    """git-annex / DataLad trees: every file is a link into a store; the patient is the link's folder."""
    store, tree = tmp_path / "store", tmp_path / "tree"
    for index, path in enumerate(sorted(two_people.rglob("*.png"))):
        (store / f"{index:02d}").mkdir(parents=True)
        (store / f"{index:02d}" / "blob").write_bytes(path.read_bytes())
        (tree / path.parent.name).mkdir(parents=True, exist_ok=True)
        (tree / path.parent.name / path.name).symlink_to(store / f"{index:02d}" / "blob")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "person_c").symlink_to(two_people / "person_a", target_is_directory=True)
    _prepare(tree, tmp_path / "d")
    assert set(_splits_of(tmp_path / "d")) == {"person_a", "person_b"}
    _prepare(tmp_path / "linked", tmp_path / "l")  # a linked folder is walked
    assert set(_splits_of(tmp_path / "l")) == {"person_c"}


def test_files_given_directly_share_their_common_folder_as_root(two_people, tmp_path):
    files = [
        two_people / "person_a" / "slice_00.png",
        two_people / "person_b" / "slice_00.png",
        two_people / "person_a" / "slice_01.png",
    ]
    _prepare(files, tmp_path / "d")
    splits = _splits_of(tmp_path / "d")
    assert set(splits) == {"person_a", "person_b"}  # not one patient "slice_00.png" of two people


def test_nested_sources_are_read_once_with_the_outermost_root(two_people, tmp_path):
    for sources in ([two_people, two_people / "person_a"], [two_people / "person_a", two_people]):
        out = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
        result = _prepare(sources, out)
        assert len(result.records) == 16 and set(_splits_of(out)) == {"person_a", "person_b"}


def test_an_empty_regex_match_is_no_match(two_people, tmp_path):
    result = _prepare(
        two_people,
        tmp_path / "d",
        patients=PatientRule.parse("regex:(person_a|)"),
        split=SplitSpec.parse("1,0,0"),
    )
    assert sum("matches it with nothing" in row["reason"] for row in result.skipped) == 8  # person_b's files
    assert set(_splits_of(tmp_path / "d")) == {"person_a"}


def test_an_empty_split_is_warned_about_and_auto_stratification_steps_back(tmp_path):
    root = tmp_path / "src"
    for name, image in (("ct0", "CT_small.dcm"), ("mr0", "MR_small.dcm"), ("mr1", "MR_small.dcm")):
        (root / name).mkdir(parents=True)
        shutil.copy(pydicom_file(image), root / name / "a.dcm")
    # by modality: CT's one patient -> train, MR's two -> train and val, test empty; a plain deal fills all three
    result = _prepare(
        root, tmp_path / "d", patients=PatientRule("folder"), split=SplitSpec.parse("0.4,0.3,0.3")
    )
    assert any("not stratified by modality" in w for w in result.warnings)
    assert {r["split"] for r in read_manifest(tmp_path / "d")} == {"train", "val", "test"}
    lonely = _prepare(
        root / "ct0", tmp_path / "one", split=SplitSpec.parse("0.5,0.5,0"), patients=PatientRule("folder")
    )
    assert any("the val split is empty" in w for w in lonely.warnings)
