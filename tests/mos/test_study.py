"""``medsr mos create``: de-identified renderings, same region and window for all, hidden checks."""

from __future__ import annotations

import json
import struct

import cv2
import numpy as np
import pytest

from medsr.cli import main
from medsr.errors import MedsrError
from medsr.fsutil import read_csv
from medsr.io.raster import read_png16
from medsr.mos.build import StudyOptions, create_study
from medsr.mos.study import CHECK_DEGRADED, CHECK_ORIGINAL, IMAGE_NAME, REPEAT, load_study
from mos_support import METHODS, make_evaluation, make_study


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory):
    return make_evaluation(tmp_path_factory.mktemp("mos-study"))


@pytest.fixture(scope="module")
def study(evaluation, tmp_path_factory):
    return make_study(evaluation, tmp_path_factory.mktemp("s") / "study")


def _png_chunks(path) -> list[str]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        chunks.append(kind.decode())
        offset += 12 + length
    return chunks


def test_evaluation_saves_every_reconstruction_and_the_reference(evaluation):
    index = read_csv(evaluation / "outputs" / "index.csv")
    assert {r["method"] for r in index} == {*METHODS, "hr"} and len(index) == 8 * 4
    for row in index[:4]:
        image = read_png16(evaluation / row["file"])
        assert image.shape == (128, 128) and 0 <= image.min() and image.max() <= 1


def test_images_are_8bit_pngs_without_metadata_and_with_opaque_names(study):
    files = sorted(study.images_dir.iterdir())
    assert {f.name for f in files} == study.image_files and all(IMAGE_NAME.match(f.name) for f in files)
    assert len(files) == 6 * 1 + 24 + 1 + 2  # originals, rated items, calibration original and its 2 items
    for path in files:
        assert set(_png_chunks(path)) == {"IHDR", "IDAT", "IEND"}
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image.dtype == np.uint8 and image.ndim == 2
    assert not list(study.folder.rglob("*.dcm"))


def _looks_the_same_but_differs(study, copy: str, original: str) -> None:
    a, b = (
        cv2.imread(str(study.images_dir / name), cv2.IMREAD_UNCHANGED).astype(int)
        for name in (copy, original)
    )
    assert np.abs(a - b).max() == 1 and 0 < np.mean(a != b) < 0.03
    assert (study.images_dir / copy).read_bytes() != (study.images_dir / original).read_bytes()


def test_every_method_shares_the_original_region_and_window(study, evaluation):
    provenance = {r["image_key"]: r for r in read_csv(study.folder / "private" / "provenance.csv")}
    for trial in study.trials:
        info = provenance[trial.image_key]
        y, x, h, w = map(int, info["region_yxhw"].split())
        low, high = float(info["window_low"]), float(info["window_high"])
        original = cv2.imread(str(study.images_dir / trial.original), cv2.IMREAD_UNCHANGED)
        for item in trial.items:
            shown = cv2.imread(str(study.images_dir / item.file), cv2.IMREAD_UNCHANGED)
            assert shown.shape == original.shape == (h, w)
            if item.kind == CHECK_ORIGINAL:  # looks the same (a few lowest bits), but not the same bytes
                _looks_the_same_but_differs(study, item.file, trial.original)
            elif item.kind == CHECK_DEGRADED:
                assert np.abs(shown.astype(int) - original).mean() > 15
            elif item.kind == REPEAT:  # a second showing of one method's image of this trial
                twin = next(i for i in trial.items if i.kind == "method" and i.method == item.method)
                _looks_the_same_but_differs(study, item.file, twin.file)
            else:
                source = read_png16(evaluation / "outputs" / item.method / f"{info['image_id']}.png")[
                    y : y + h, x : x + w
                ]
                expected = np.clip(np.rint((source.astype(np.float64) - low) / (high - low) * 255), 0, 255)
                assert np.array_equal(shown, expected.astype(np.uint8))
        reference = read_png16(evaluation / "outputs" / "hr" / f"{info['image_id']}.png")[
            y : y + h, x : x + w
        ]
        assert np.percentile(reference, 0.5) == pytest.approx(low) and np.percentile(
            reference, 99.5
        ) == pytest.approx(high)


def test_checks_calibration_and_blinding(study, evaluation):
    kinds = [i.kind for t in study.trials for i in t.items]
    assert (
        kinds.count(CHECK_ORIGINAL) == 1 and kinds.count(CHECK_DEGRADED) == 1 and kinds.count("method") == 18
    )
    assert kinds.count(REPEAT) == 4 and {len(t.items) for t in study.trials} == {
        4
    }  # every trial shows as many images
    assert sorted(c.expected for c in study.calibration) == [1, 5]
    original = cv2.imread(str(study.images_dir / study.calibration_original), cv2.IMREAD_UNCHANGED)
    five = next(c for c in study.calibration if c.expected == 5)
    assert original.shape == cv2.imread(str(study.images_dir / five.file), cv2.IMREAD_UNCHANGED).shape
    _looks_the_same_but_differs(study, five.file, study.calibration_original)
    text = (study.folder / "study.json").read_text()
    for row in read_csv(evaluation / "outputs" / "index.csv"):
        assert row["image_id"] not in text and row["patient_id"] not in text  # the key stays in private/
    calibration_id = read_csv(study.folder / "private" / "provenance.csv")[-1]["image_id"]
    used = {r["image_id"] for r in read_csv(study.folder / "private" / "provenance.csv")[:-1]}
    assert calibration_id not in used and len(used) == 6


def test_refusals_name_the_problem(evaluation, tmp_path, capsys):
    with pytest.raises(MedsrError, match="--save-outputs"):
        create_study(tmp_path, tmp_path / "s1", StudyOptions(methods=METHODS, n_images=2))
    with pytest.raises(MedsrError, match="srgan is not in"):
        create_study(evaluation, tmp_path / "s2", StudyOptions(methods=("bicubic", "srgan"), n_images=2))
    with pytest.raises(MedsrError, match="needs --images \\+ 1"):
        create_study(evaluation, tmp_path / "s3", StudyOptions(methods=METHODS, n_images=8))
    with pytest.raises(MedsrError, match="--baseline"):
        StudyOptions(methods=METHODS, n_images=2, baseline="lanczos")
    (tmp_path / "taken").mkdir()
    assert (
        main(
            [
                "mos",
                "create",
                str(evaluation),
                "--methods",
                "bicubic",
                "--images",
                "2",
                "--out",
                str(tmp_path / "taken"),
            ]
        )
        == 1
    )
    assert "already exists" in capsys.readouterr().err
    assert not list(tmp_path.glob(".*tmp"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "study.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(MedsrError, match="not a medsr reader study"):
        load_study(tmp_path / "broken")


def test_cli_builds_a_study_that_loads(evaluation, tmp_path, capsys):
    out = tmp_path / "cli-study"
    assert (
        main(
            [
                "mos",
                "create",
                str(evaluation),
                "--methods",
                "bicubic,bilinear",
                "--images",
                "4",
                "--out",
                str(out),
                "--crop",
                "64",
                "--check-fraction",
                "0.5",
                "--title",
                "Pilot",
            ]
        )
        == 0
    )
    assert (
        "4 trials x 2 methods, 2 hidden attention checks, 2 hidden repeats, 12 ratings per rater"
        in capsys.readouterr().out
    )
    study = load_study(out)
    assert study.title == "Pilot" and study.baseline == "bicubic"
    assert cv2.imread(str(study.images_dir / study.trials[0].original), cv2.IMREAD_UNCHANGED).shape == (
        64,
        64,
    )
