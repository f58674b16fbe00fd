"""The built-in model medsr-x4 as shipped in the package: offline, listed, documented, held out
from the demo's test patients, the default of ``medsr enhance``, exported to ONNX."""

from __future__ import annotations

import socket

import numpy as np
import pydicom
import pytest

from conftest import ROOT, pydicom_file, tree_digest
from medsr.cli import main
from medsr.data.degrade import Degradation, degrade_image
from medsr.data.provenance import check_held_out
from medsr.infer import enhance_tiled
from medsr.io import read_slices
from medsr.metrics import psnr
from medsr.models import load_model
from medsr.models.builtin import builtin_names, card_path, read_metadata

NAME = "medsr-x4"
#: The demo's split of the sample data (configs/demo.yaml; `medsr info runs/demo/dataset`).
DEMO_TRAIN_VAL = (
    "pycortex-S1",
    "pyradiomics-lung2",
    "11RG3",
    "pyradiomics-brain2",
    "CQ500-CT-310",
    "0010",
    "9RG1",
)
DEMO_TEST = ("pyradiomics-lung1", "pyradiomics-brain1", "5MR2", "021234567")


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the built-in model must not touch the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_it_ships_and_loads_offline(offline):
    assert NAME in builtin_names()
    model = load_model(NAME, device="cpu")
    assert (model.scale, model.architecture, model.version) == (4, "span", "1")
    assert model.intensity["ct_window"] == [-1024.0, 3071.0]
    assert read_metadata(card_path(NAME).with_suffix(".safetensors"))["name"] == NAME


def test_its_record_holds_the_demo_training_patients_and_none_of_its_test_patients():
    record = load_model(NAME, device="cpu").trained_on

    def rows(patients):
        return [{"patient_id": p, "series_uid": "", "source": "", "source_id": ""} for p in patients]

    assert not check_held_out(NAME, record, rows(DEMO_TEST), "test")
    seen = check_held_out(NAME, record, rows(DEMO_TRAIN_VAL), "test").seen
    assert len(seen) == len(DEMO_TRAIN_VAL)
    assert record["counts"] == {"train": 3, "val": 4}


def _unit(path) -> np.ndarray:
    """A real slice on [0, 1] as medsr maps it (CT: -1024..3071 HU; MR: min..max)."""
    pixels = read_slices(path)[0].pixels.astype(np.float32)
    if "CT" in path.name:
        return np.clip((pixels + 1024) / 4095, 0, 1)
    return (pixels - pixels.min()) / (pixels.max() - pixels.min())


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
def test_it_beats_bicubic_on_real_slices_it_never_saw(name):
    # pydicom's own CT_small and MR_small are not among the sample data it was trained on
    hr = _unit(pydicom_file(name))
    lq = degrade_image(hr, Degradation(kind="bicubic", scale=4))
    model, bicubic = load_model(NAME, device="cpu"), load_model("bicubic")
    gain = psnr(model.enhance(lq), hr) - psnr(bicubic.enhance(lq), hr)
    assert gain > 0.5
    tiled = enhance_tiled(model, lq, tile=2 * model.receptive_radius + 8, blend=4)
    assert np.abs(tiled - model.enhance(lq)).max() < 1e-4


def test_enhance_uses_it_by_default_and_names_it_in_the_dicom(tmp_path, offline):
    source = tmp_path / "in" / "ct.dcm"
    source.parent.mkdir()
    source.write_bytes(pydicom_file("CT_small.dcm").read_bytes())
    before = tree_digest(tmp_path / "in")
    assert main(["enhance", str(source), "-o", str(tmp_path / "out")]) == 0
    assert tree_digest(tmp_path / "in") == before
    (written,) = list((tmp_path / "out").rglob("*.dcm"))
    ds = pydicom.dcmread(written)
    assert f"model {NAME} version 1" in ds.DerivationDescription
    assert (ds.Rows, ds.Columns) == (512, 512)
    hu = read_slices(written)[0].pixels
    original = read_slices(source)[0].pixels
    assert abs(float(hu.mean()) - float(original.mean())) < 0.02 * float(np.ptp(original))  # HU kept


def test_models_lists_baselines_and_it_with_size_and_gain(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("nearest", "bilinear", "bicubic", "lanczos", NAME):
        assert name in out
    line = out[out.index(NAME) :]
    assert "MB" in line and "M parameters" in line and "dB" in line.splitlines()[1]


def test_its_card_is_printed_and_is_the_one_in_docs(capsys):
    assert main(["models", "--card", NAME]) == 0
    card = capsys.readouterr().out
    for needle in ("Intended use", "Limitations", "Training data", "Held-out", "licence", "make model"):
        assert needle.lower() in card.lower()
    assert (ROOT / "docs" / "models" / f"{NAME}.md").read_text() == card_path(NAME).read_text()
    assert main(["models", "--card", "nope"]) == 1
    assert "not a built-in model" in capsys.readouterr().err


def test_its_onnx_export_names_it(tmp_path):
    pytest.importorskip("onnxruntime", reason="pip install 'medsr[onnx]'")
    assert main(["export", NAME, "-o", str(tmp_path / "m.onnx")]) == 0
    exported, original = load_model(tmp_path / "m.onnx"), load_model(NAME, device="cpu")
    assert exported.version == "1" and exported.label == f"{NAME} version 1 (ONNX export m.onnx)"
    image = _unit(pydicom_file("CT_small.dcm"))[:45, :67]
    assert np.abs(exported.enhance(image) - original.enhance(image)).max() <= 1e-4


def test_the_package_data_ships_the_weights_and_card():
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    folder = card_path(NAME).parent.parent  # src/medsr/models
    shipped = {p for pattern in patterns["medsr.models"] for p in folder.glob(pattern)}
    assert {card_path(NAME), card_path(NAME).with_suffix(".safetensors")} <= shipped


def test_its_recorded_held_out_evaluation_meets_the_floor_and_is_what_the_card_quotes():
    from medsr.models.builtin import builtin_path

    evaluation = read_metadata(builtin_path(NAME))["evaluation"]
    assert (
        evaluation["split"] == "test"
        and evaluation["baseline"] == "bicubic"
        and evaluation["n_patients"] == 4
    )
    overall = evaluation["overall"]["gain"][NAME]["psnr"]
    mr = evaluation["by_modality"]["MR"]["gain"][NAME]["psnr"]
    assert overall["mean_diff"] >= 3.0 and mr["mean_diff"] >= 1.5  # the release floor
    card = card_path(NAME).read_text()
    assert f"{overall['mean_diff']:+.2f} [{overall['ci_low']:+.2f}, {overall['ci_high']:+.2f}]" in card
    assert f"{mr['mean_diff']:+.2f} [{mr['ci_low']:+.2f}, {mr['ci_high']:+.2f}]" in card
