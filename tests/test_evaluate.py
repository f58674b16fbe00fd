"""``medsr evaluate`` on a small prepared data set of real CT slices."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medsr.cli import main
from medsr.data.degrade import Degradation, crop_to_scale, degrade_image
from medsr.data.manifest import read_manifest
from medsr.errors import MedsrError
from medsr.evaluate import EvalOptions, evaluate
from medsr.io.raster import read_png16
from medsr.models import SRModel, load_model
from medsr.models.interpolation import InterpolationModel

from conftest import make_ct_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_ct_dataset(tmp_path_factory.mktemp("eval"), 6, "6,2,4")


def _run(dataset, out, *extra):
    args = ["evaluate", str(dataset), "--out", str(out), "--model", "nearest", "--model", "bilinear", "--model", "bicubic", *extra]
    assert main(args) == 0


def test_writes_metrics_summary_tables_and_figures(dataset, tmp_path, capsys):
    out = tmp_path / "eval"
    _run(dataset, out)
    assert capsys.readouterr().out.startswith("4 test images: nearest ")
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 4 * 3
    assert list(rows[0]) == ["image_id", "patient_id", "modality", "method", "psnr", "ssim", "psnr_fg", "ssim_fg"]
    summary = json.loads((out / "summary.json").read_text())
    means = {name: (m["psnr"]["mean"], m["ssim"]["mean"]) for name, m in summary["methods"].items()}
    assert means["nearest"][0] < means["bilinear"][0] < means["bicubic"][0]
    assert means["nearest"][1] < means["bilinear"][1] < means["bicubic"][1]
    for name, m in summary["methods"].items():
        assert m["psnr"]["ci_low"] <= m["psnr"]["mean"] <= m["psnr"]["ci_high"]
    nearest = summary["vs_baseline"]["nearest"]["psnr"]
    assert nearest["mean_diff"] < 0 and nearest["ci_high"] < 0 and nearest["improvement_pct"] < 0
    assert summary["protocol"]["degradation"] == {"kind": "bicubic", "scale": 4}
    assert summary["protocol"]["n_images"] == 4 and summary["protocol"]["split"] == "test"
    table = (out / "table.md").read_text()
    assert "Table 2 layout" in table and "Table 1 layout" in table and "(baseline)" in table
    figures = sorted(p.name.split("_")[0] for p in (out / "figures").glob("*.png"))
    assert figures == ["best", "sample", "sample", "worst"]


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
    result = evaluate(dataset, [first, second], tmp_path / "e", EvalOptions(degradation=spec, seed=5, n_figures=0))
    assert list(result.summary["methods"]) == ["bicubic", "first", "second"]
    rows = read_manifest(dataset, split="test")
    expected = [degrade_image(crop_to_scale(read_png16(dataset / r["file"]), 4), spec, seed=5, key=r["id"]) for r in rows]
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
