"""``medsr evaluate`` on a small prepared data set of real CT slices."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import lpips_weights_or_skip, make_ct_dataset, pydicom_file, write_ct_series
from medsr.cli import main
from medsr.data.degrade import Degradation, crop_to_scale, degrade_image
from medsr.data.manifest import read_manifest
from medsr.data.prepare import KeepRule, PrepareOptions, prepare
from medsr.data.split import SplitSpec
from medsr.errors import MedsrError
from medsr.evaluate import EvalOptions, evaluate
from medsr.io.raster import read_png16
from medsr.models import SRModel, load_model
from medsr.models.interpolation import InterpolationModel


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_ct_dataset(tmp_path_factory.mktemp("eval"), 6, "6,2,4")


def _run(dataset, out, *extra):
    args = [
        "evaluate",
        str(dataset),
        "--out",
        str(out),
        "--model",
        "nearest",
        "--model",
        "bilinear",
        "--model",
        "bicubic",
        *extra,
    ]
    assert main(args) == 0


def test_writes_metrics_summary_tables_and_figures(dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    _run(dataset, out)
    assert capsys.readouterr().out.startswith("4 test images: nearest ")
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 4 * 3
    assert list(rows[0]) == [
        "image_id",
        "patient_id",
        "modality",
        "method",
        "psnr",
        "ssim",
        "hfen",
        "lpips",
        "psnr_fg",
        "ssim_fg",
        "hfen_fg",
    ]  # the default metrics: psnr, ssim, lpips, hfen
    summary = json.loads((out / "summary.json").read_text())
    means = {name: (m["psnr"]["mean"], m["ssim"]["mean"]) for name, m in summary["methods"].items()}
    assert means["nearest"][0] < means["bilinear"][0] < means["bicubic"][0]
    assert means["nearest"][1] < means["bilinear"][1] < means["bicubic"][1]
    for m in summary["methods"].values():
        assert m["psnr"]["ci_low"] <= m["psnr"]["mean"] <= m["psnr"]["ci_high"]
    nearest = summary["vs_baseline"]["nearest"]["psnr"]
    assert nearest["mean_diff"] < 0 and nearest["ci_high"] < 0 and nearest["improvement_pct"] < 0
    assert summary["protocol"]["degradation"] == {"kind": "bicubic", "scale": 4}
    assert summary["protocol"]["n_images"] == 4 and summary["protocol"]["split"] == "test"
    table = (out / "table.md").read_text()
    assert "Table 2 layout" in table and "Table 1 layout" in table and "(baseline)" in table
    figures = sorted(p.name.split("_")[0] for p in (out / "figures").glob("*.png"))
    assert figures == ["best", "perception", "sample", "sample", "worst"]  # with LPIPS, the plane too


def test_more_metrics_get_columns_statistics_and_a_table(dataset, tmp_path):
    from medsr.metrics import hfen, ms_ssim

    out = tmp_path / "eval"
    _run(dataset, out, "--metrics", "hfen,ms_ssim,gmsd,nrmse", "--figures", "0")
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert list(rows[0])[4:] == [
        "psnr",
        "ssim",
        "ms_ssim",
        "gmsd",
        "hfen",
        "nrmse",
        "psnr_fg",
        "ssim_fg",
        "hfen_fg",
        "nrmse_fg",
    ]
    summary = json.loads((out / "summary.json").read_text())
    methods = summary["methods"]
    assert methods["nearest"]["hfen"]["mean"] > methods["bicubic"]["hfen"]["mean"]  # lower is better
    assert summary["vs_baseline"]["nearest"]["gmsd"]["mean_diff"] > 0
    assert summary["dropped"]["ms_ssim"] == 4 and summary["dropped"]["hfen"] == 0  # 128x128 < 161x161
    assert summary["protocol"]["metrics"] == ["psnr", "ssim", "ms_ssim", "gmsd", "hfen", "nrmse"]
    row = next(r for r in rows if r["method"] == "bicubic")
    image = next(r for r in read_manifest(dataset, split="test") if r["id"] == row["image_id"])
    hr = crop_to_scale(read_png16(dataset / image["file"]), 4).astype(np.float32)
    sr = load_model("bicubic").enhance(degrade_image(hr, Degradation(), seed=0, key=image["id"]))
    assert float(row["hfen"]) == pytest.approx(hfen(np.clip(sr, 0, 1), hr), rel=1e-9)
    assert row["ms_ssim"] == "nan" and np.isnan(ms_ssim(np.pad(hr, 20), np.pad(hr, 20)) - 1) is np.False_
    table = (out / "table.md").read_text()
    assert "## More metrics" in table and "HFEN ↓" in table and "MS-SSIM ↑" in table
    assert main(["evaluate", str(dataset), "--out", str(tmp_path / "x"), "--metrics", "psnr,fid"]) == 1


def test_lpips_is_scored_and_drawn_against_psnr(dataset, tmp_path):
    lpips_weights_or_skip()
    out = tmp_path / "eval"
    _run(dataset, out, "--metrics", "lpips,dists", "--figures", "1")
    summary = json.loads((out / "summary.json").read_text())
    lpips = {name: m["lpips"]["mean"] for name, m in summary["methods"].items()}
    assert lpips["bicubic"] < lpips["nearest"] and all(0 < v < 1 for v in lpips.values())
    dists = {name: m["dists"]["mean"] for name, m in summary["methods"].items()}
    assert dists["bicubic"] < dists["nearest"] and all(0 < v < 1 for v in dists.values())
    assert (out / "figures" / "perception_distortion_all_images.png").stat().st_size > 10_000
    import cv2

    (sample,) = (out / "figures").glob("sample_*.png")  # with a third row of LPIPS maps
    assert cv2.imread(str(sample)).shape[0] > 3 * 250


def test_same_call_twice_gives_identical_numbers(dataset, tmp_path):
    _run(dataset, tmp_path / "a", "--split", "val")
    _run(dataset, tmp_path / "b", "--split", "val")
    for name in ("metrics.csv", "summary.json", "table.md"):
        text_a = (tmp_path / "a" / name).read_text().replace(str(tmp_path / "a"), "")
        assert text_a == (tmp_path / "b" / name).read_text().replace(str(tmp_path / "b"), "")


class Recorder(SRModel):
    """A method that remembers every LR image it was given (then upsamples bicubically)."""

    def __init__(self, name: str) -> None:
        self.name, self.scale, self.seen = name, 4, []
        self._inner = InterpolationModel("bicubic", 4)

    def enhance_batch(self, lq):
        self.seen.extend(image[0].copy() for image in lq)
        return self._inner.enhance_batch(lq)


def test_every_method_gets_the_same_lr_images_and_the_baseline_is_added(dataset, tmp_path):
    spec = Degradation("blur-noise", 4, noise_level=0.03)
    first, second = Recorder("first"), Recorder("second")
    result = evaluate(
        dataset, [first, second], tmp_path / "e", EvalOptions(degradation=spec, seed=5, n_figures=0)
    )
    assert list(result.summary["methods"]) == ["bicubic", "first", "second"]
    rows = read_manifest(dataset, split="test")
    expected = [
        degrade_image(crop_to_scale(read_png16(dataset / r["file"]), 4), spec, seed=5, key=r["id"])
        for r in rows
    ]
    # the recorders also saw the figure images (best, worst) again: the first len(rows) are the scoring pass
    for seen in (first.seen, second.seen):
        assert len(seen) == len(rows) + 2
        for got, want in zip(seen, expected):
            np.testing.assert_array_equal(got, want)
    assert result.summary["protocol"]["degradation"]["noise_level"] == 0.03


def test_bad_requests_are_clear_errors(dataset, tmp_path):
    with pytest.raises(MedsrError, match="is x2, the protocol is x4"):
        evaluate(dataset, [load_model("bicubic", scale=2)], tmp_path / "x")
    with pytest.raises(MedsrError, match="unknown split"):
        evaluate(dataset, [load_model("bicubic")], tmp_path / "x", EvalOptions(split="holdout"))
    assert main(["evaluate", str(dataset), "--out", str(tmp_path / "x"), "--model", "srresnet9"]) == 1


class Oracle(SRModel):
    """Returns the HR image itself for one chosen image (PSNR = inf there), bicubic elsewhere."""

    def __init__(self, dataset: Path, image_id: str) -> None:
        self.name, self.scale = "oracle", 4
        self.hr = crop_to_scale(read_png16(dataset / f"slices/{image_id}.png"), 4).astype(np.float32)
        self._inner = InterpolationModel("bicubic", 4)

    def enhance_batch(self, lq):
        out = self._inner.enhance_batch(lq)
        for index, image in enumerate(lq):
            if image.shape[-2:] == (self.hr.shape[0] // 4, self.hr.shape[1] // 4):
                reference = degrade_image(self.hr, Degradation(), key="")
                if np.array_equal(image[0], reference):
                    out[index, 0] = self.hr
        return out


def test_a_non_finite_score_drops_the_image_for_every_method(dataset, tmp_path):
    rows = read_manifest(dataset, split="test")
    oracle = Oracle(dataset, rows[0]["id"])
    result = evaluate(dataset, [load_model("nearest"), oracle], tmp_path / "e", EvalOptions(n_figures=0))
    summary = result.summary
    first = read_png16(dataset / rows[0]["file"])
    perfect = sum(
        np.array_equal(read_png16(dataset / r["file"]), first) for r in rows
    )  # the test CT slices repeat
    assert summary["dropped"]["psnr"] == perfect >= 1 and summary["dropped"]["ssim"] == 0
    assert {m["psnr"]["n"] for m in summary["methods"].values()} == {
        len(rows) - perfect
    }  # the same images for all
    assert {m["ssim"]["n"] for m in summary["methods"].values()} == {len(rows)}
    assert (
        f"dropped for every method (PSNR (dB): {perfect}, leaving 2 patients and {len(rows) - perfect} slices"
        in (tmp_path / "e" / "table.md").read_text()
    )


def test_tables_give_each_modality_its_patients_and_warn_about_few_patients(tmp_path):
    for index in range(3):
        write_ct_series(tmp_path / "src" / f"ct{index}", 2, patient=f"C{index}")
        folder = tmp_path / "src" / f"mr{index}"
        folder.mkdir()
        shutil.copy(pydicom_file("MR_small.dcm"), folder / "a.dcm")  # one MR patient id; folders don't matter
    dataset = tmp_path / "d"
    prepare(
        [tmp_path / "src"],
        dataset,
        PrepareOptions(
            size=None, min_size=64, keep=KeepRule("all"), split=SplitSpec.parse("0.0,0.0,1.0"), workers=1
        ),
    )
    result = evaluate(dataset, [load_model("nearest")], tmp_path / "e", EvalOptions(n_figures=0))
    summary = result.summary
    assert set(summary["by_modality"]) == {"CT", "MR"}
    assert summary["by_modality"]["CT"]["n_patients"] == 3 and summary["by_modality"]["CT"]["n_images"] == 6
    assert summary["n_patients"] == 4
    table = (tmp_path / "e" / "table.md").read_text()
    assert "## Table 2 layout (CT)" in table and "| Method (3 patients, 6 slices) |" in table
    assert "## Table 2 layout (all modalities)" in table and "| Method (4 patients, 9 slices) |" in table
    assert "**all modalities: only 4 patients, so intervals and p-values are unreliable.**" in table
    assert "smallest p the patient-level test can give is 0.125" in table


def test_batches_by_shape_groups_equal_shapes_in_chunks():
    from medsr.batching import batches_by_shape

    images = [np.zeros(shape) for shape in ((4, 4), (2, 2), (4, 4), (4, 4), (2, 2))]
    assert list(batches_by_shape(images, 2)) == [[0, 2], [3], [1, 4]]
    with pytest.raises(ValueError, match="batch_size"):
        list(batches_by_shape(images, 0))
