"""Weights files in medsr's safetensors format (how built-in models ship): written from a checkpoint,
read without pickle, refused with a one-line reason when damaged."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import safetensors.torch

from conftest import pydicom_file
from medsr.cli import main
from medsr.errors import MedsrError
from medsr.io import read_slices
from medsr.models import load_model
from medsr.models.builtin import FORMAT, pack_builtin, read_metadata
from models.test_onnx import INTENSITY, RECORD, _checkpoint


@pytest.fixture
def packed(tmp_path):
    checkpoint = _checkpoint("span", tmp_path)
    out = pack_builtin(
        checkpoint, tmp_path / "w.safetensors", name="tiny-x4", version="3", description="a test"
    )
    return checkpoint, out


def _ct_image() -> np.ndarray:
    pixels = read_slices(pydicom_file("CT_small.dcm"))[0].pixels.astype(np.float32)
    return np.clip((pixels + 1024) / 4095, 0, 1)[:61, :77]


def test_a_packed_model_computes_what_its_checkpoint_does(packed):
    checkpoint, path = packed
    image = _ct_image()
    from_checkpoint, from_weights = load_model(checkpoint, device="cpu"), load_model(path, device="cpu")
    assert np.abs(from_weights.enhance(image) - from_checkpoint.enhance(image)).max() < 1e-5
    assert (from_weights.name, from_weights.version, from_weights.scale) == ("tiny-x4", "3", 4)
    assert from_weights.intensity == INTENSITY and from_weights.trained_on == {**RECORD, "fitted": ["train"]}
    assert from_weights.receptive_radius == from_checkpoint.receptive_radius
    assert from_weights.label == "tiny-x4 version 3"


def test_the_file_is_safetensors_with_no_pickle(packed):
    _, path = packed
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])  # a JSON header, then raw tensor bytes: nothing to unpickle
    meta = json.loads(header["__metadata__"]["medsr"])
    assert meta["format"] == FORMAT and meta["architecture"] == "span" and meta["kwargs"]["scale"] == 4
    assert all(entry["dtype"] == "F32" for key, entry in header.items() if key != "__metadata__")
    assert meta == read_metadata(path)


def _damaged(path, tmp_path, change) -> str:
    raw = bytearray(path.read_bytes())
    change(raw)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    return str(bad)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda raw: raw.__delitem__(slice(len(raw) - 100, None)), "not a readable safetensors file"),
        (lambda raw: raw.__setitem__(slice(len(raw) - 5, len(raw) - 4), b"\x7f"), "damaged weights"),
        (lambda raw: raw.__delitem__(slice(None)), "not a readable safetensors file"),
    ],
    ids=["truncated", "flipped-byte", "empty"],
)
def test_a_damaged_weights_file_is_refused_with_its_reason(packed, tmp_path, change, reason):
    bad = _damaged(packed[1], tmp_path, change)
    with pytest.raises(MedsrError, match=reason) as caught:
        load_model(bad, device="cpu")
    assert bad in str(caught.value) and "\n" not in str(caught.value)


def test_safetensors_without_medsr_metadata_are_refused(tmp_path):
    import torch

    safetensors.torch.save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(MedsrError, match="not a medsr model"):
        load_model(tmp_path / "other.safetensors")


def test_enhance_with_a_damaged_file_is_a_one_line_error(packed, tmp_path, capsys):
    bad = _damaged(packed[1], tmp_path, lambda raw: raw.__delitem__(slice(len(raw) - 100, None)))
    code = main(["enhance", str(pydicom_file("CT_small.dcm")), "-o", str(tmp_path / "out"), "--model", bad])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and "bad.safetensors" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.dcm"))


def _retagged(path, tmp_path, change) -> str:
    """A copy of ``path`` whose metadata ``change`` edits (its recorded digest left as it was)."""
    tensors = safetensors.torch.load_file(str(path))
    meta = read_metadata(path)
    change(meta)
    out = tmp_path / "edited.safetensors"
    safetensors.torch.save_file(tensors, str(out), metadata={"medsr": json.dumps(meta)})
    return str(out)


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["trained_on"].__setitem__("fingerprint", "0" + m["trained_on"]["fingerprint"][1:]),
        lambda m: m["intensity"].__setitem__("ct_window", [-1024, 2071]),
        lambda m: m.__setitem__("scale", 2),
    ],
    ids=["training-record", "intensity", "scale"],
)
def test_edited_metadata_is_refused(packed, tmp_path, change):
    with pytest.raises(MedsrError, match="damaged medsr metadata"):
        load_model(_retagged(packed[1], tmp_path, change), device="cpu")


def test_metadata_of_the_wrong_types_is_refused_even_with_a_matching_digest(packed, tmp_path):
    from medsr.models.builtin import metadata_digest

    def bad(meta):
        meta["kwargs"], meta["trained_on"] = "scale=4", {}
        meta["metadata_sha256"] = metadata_digest(meta)

    with pytest.raises(MedsrError, match="kwargs is not a dict"):
        load_model(_retagged(packed[1], tmp_path, bad), device="cpu")


def test_the_file_is_readable_by_others_and_a_built_in_exports_as_a_copy(packed, tmp_path):
    import os
    import stat

    mode = stat.S_IMODE(packed[1].stat().st_mode)
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask
    assert main(["export", "medsr-x4", "-o", str(tmp_path / "copy.safetensors")]) == 0
    assert load_model(tmp_path / "copy.safetensors", device="cpu").version == "1"


def test_export_writes_safetensors_with_held_out_scores(tmp_path, capsys):
    checkpoint = _checkpoint("span", tmp_path)
    summary = {
        "protocol": {
            "split": "test",
            "baseline": "bicubic",
            "degradation": {"kind": "bicubic", "scale": 4},
            "held_out": True,
            "methods": [{"name": "tiny_span", "source": checkpoint}],
        },
        "n_patients": 4,
        "n_images": 9,
        "methods": {"tiny_span": {"psnr": {"mean": 40.0, "ci_low": 39.0, "ci_high": 41.0, "n": 9}}},
        "vs_baseline": {
            "tiny_span": {"psnr": {"mean_diff": 2.5, "ci_low": 1.0, "ci_high": 4.0, "p_patients": 0.1}}
        },
        "by_modality": {},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "m.safetensors"
    args = ["export", checkpoint, "-o", str(out), "--evaluation", str(tmp_path / "summary.json")]
    assert main(args) == 0
    meta = read_metadata(out)
    assert (
        meta["name"] == "tiny_span"
        and meta["evaluation"]["overall"]["gain"]["tiny_span"]["psnr"]["mean_diff"] == 2.5
    )
    assert main([*args[:4], "--name", "other", "--evaluation", str(tmp_path / "summary.json")]) == 1
    assert "does not score a method named 'other'" in capsys.readouterr().err
    summary["protocol"]["held_out"] = False  # scored with --allow-overlap
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert main(args) == 1 and "not held out" in capsys.readouterr().err
    summary["protocol"]["held_out"], summary["protocol"]["methods"][0]["source"] = True, "other.pt"
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert main(args) == 1 and "was read from other.pt" in capsys.readouterr().err
