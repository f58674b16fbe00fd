"""ONNX export of every registered architecture, checked with onnx.checker and ONNX Runtime
against PyTorch on real slices; ONNX models behind the SRModel interface and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import pydicom_file, tree_digest, write_ct_series
from medsr.cli import main
from medsr.errors import MedsrError
from medsr.infer import enhance_tiled
from medsr.io import read_slices
from medsr.models import load_model
from medsr.models.checkpoint import model_entry, save_checkpoint
from medsr.models.onnx_format import METADATA, OPTIONAL_METADATA
from medsr.models.registry import architectures
from models.test_architectures import SMALL, small

onnx = pytest.importorskip("onnx", reason="pip install 'medsr[onnx]'")
pytest.importorskip("onnxruntime", reason="pip install 'medsr[onnx]'")

INTENSITY = {"ct_window": [-1024, 3071], "percentiles": [0, 100]}
RECORD = {"fingerprint": "f" * 64, "patients": {"train": ["a"], "val": []}, "dataset": "d"}


def _checkpoint(name: str, folder) -> str:
    kwargs = {"scale": 4, **SMALL.get(name, {"blocks": 2, "channels": 16})}
    path = folder / f"{name}.pt"
    payload = {"model": model_entry(name, kwargs, small(name)), "config": {"name": f"tiny_{name}"}}
    save_checkpoint(path, {**payload, "intensity": INTENSITY, "trained_on": RECORD})
    return str(path)


@pytest.fixture(scope="module")
def slices() -> list[np.ndarray]:
    """Real CT (pydicom's CT_small) cut to several sizes, odd ones included, in [0, 1]."""
    pixels = read_slices(pydicom_file("CT_small.dcm"))[0].pixels.astype(np.float32)
    image = np.clip((pixels + 1024) / 4095, 0, 1)
    return [image[:37, :53], image[5:69, 9:73], image[:128, :101]]


@pytest.mark.parametrize("name", sorted(architectures()))
def test_the_export_runs_as_pytorch_does(name, tmp_path, slices):
    checkpoint = _checkpoint(name, tmp_path)
    assert main(["export", checkpoint, "-o", str(tmp_path / "m.onnx")]) == 0
    onnx.checker.check_model(str(tmp_path / "m.onnx"))
    torch_model, onnx_model = load_model(checkpoint, device="cpu"), load_model(tmp_path / "m.onnx")
    for image in slices:
        assert np.abs(onnx_model.enhance(image) - torch_model.enhance(image)).max() <= 1e-4
    batch = np.stack([slices[1], slices[1][::-1]])[:, None]
    assert np.abs(onnx_model.enhance_batch(batch) - torch_model.enhance_batch(batch)).max() <= 1e-4
    assert (onnx_model.scale, onnx_model.receptive_radius) == (4, torch_model.receptive_radius)
    assert onnx_model.intensity == INTENSITY and onnx_model.trained_on == RECORD
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert set(meta) == set(METADATA) | set(OPTIONAL_METADATA) and meta["architecture"] == name
    assert json.loads(meta["kwargs"])["scale"] == 4
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version >= 17


def test_tiles_and_dicom_through_onnx_match_pytorch(tmp_path):
    checkpoint = _checkpoint("span", tmp_path)
    main(["export", checkpoint, "-o", str(tmp_path / "m.onnx")])
    model = load_model(tmp_path / "m.onnx")
    lq = np.random.default_rng(0).random((70, 90)).astype(np.float32)
    tiled = enhance_tiled(model, lq, tile=2 * model.receptive_radius + 24, blend=4)
    assert np.abs(tiled - model.enhance(lq)).max() < 1e-4
    write_ct_series(tmp_path / "in" / "P" / "s", 2, patient="P")
    before = tree_digest(tmp_path / "in")
    for label, source in (("pt", checkpoint), ("onnx", str(tmp_path / "m.onnx"))):
        assert main(["enhance", str(tmp_path / "in"), "-o", str(tmp_path / label), "--model", source]) == 0
    assert tree_digest(tmp_path / "in") == before
    written = sorted(p.relative_to(tmp_path / "pt") for p in (tmp_path / "pt").rglob("*.dcm"))
    assert len(written) == 2
    for name in written:
        a, b = (read_slices(tmp_path / label / name)[0].pixels for label in ("pt", "onnx"))
        assert a.shape == b.shape and np.abs(a - b).max() <= 1  # HU, after rounding


def test_bad_files_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    with pytest.raises(MedsrError, match="junk.onnx: not a readable ONNX model"):
        load_model(tmp_path / "junk.onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    plain = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save_model(plain, tmp_path / "plain.onnx")
    with pytest.raises(MedsrError, match="plain.onnx: not a medsr ONNX export"):
        load_model(tmp_path / "plain.onnx")
    main(["export", _checkpoint("span", tmp_path), "-o", str(tmp_path / "m.onnx")])
    with pytest.raises(MedsrError, match="m.onnx is a x4 model, x2 was asked for"):
        load_model(tmp_path / "m.onnx", scale=2)
    assert main(["export", "bicubic", "-o", str(tmp_path / "b.onnx")]) != 0
    assert "only trained networks can be exported" in capsys.readouterr().err
    assert not (tmp_path / "b.onnx").exists()


def test_damaged_exports_and_unusable_options_are_refused(tmp_path):
    main(["export", _checkpoint("span", tmp_path), "-o", str(tmp_path / "m.onnx")])
    data = (tmp_path / "m.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(MedsrError, match="cut.onnx: not a readable ONNX model"):
        load_model(tmp_path / "cut.onnx")
    model = onnx.load(str(tmp_path / "m.onnx"))
    next(p for p in model.metadata_props if p.key == "scale").value = "2"  # the graph is x4
    onnx.save_model(model, tmp_path / "lies.onnx")
    with pytest.raises(MedsrError, match="does not match its metadata's x2"):
        load_model(tmp_path / "lies.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(MedsrError, match="is a folder"):
        load_model(tmp_path / "folder.onnx")
    for options, message in (({"device": "cuda"}, "run on the CPU"), ({"precision": "bf16"}, "run in fp32")):
        with pytest.raises(MedsrError, match=message):
            load_model(tmp_path / "m.onnx", **options)


def test_an_export_that_does_not_reproduce_the_network_is_not_written(tmp_path):
    import torch

    checkpoint = torch.load(_checkpoint("msrresnet", tmp_path), weights_only=True)
    state = checkpoint["model"]["state_dict"]
    state["conv_last.weight"] = torch.full_like(state["conv_last.weight"], float("nan"))
    save_checkpoint(tmp_path / "nan.pt", checkpoint)
    assert main(["export", str(tmp_path / "nan.pt"), "-o", str(tmp_path / "nan.onnx")]) != 0
    assert not (tmp_path / "nan.onnx").exists() and not list(tmp_path.glob("*.tmp*"))
