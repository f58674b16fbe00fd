"""Training on CPU on a small data set of real CT slices: outputs, resume, SRGAN stage, DDP (gloo)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, make_ct_dataset
from medsr.cli import main
from medsr.models import load_model
from medsr.models.checkpoint import read_checkpoint
from medsr.train.config import load_config
from medsr.train.loop import fit

TINY = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_ct_dataset(tmp_path_factory.mktemp("train"), 5, "6,2,2")


def _config(dataset: Path, run_dir: Path, *extra: str):
    return load_config(
        TINY, [f"data.dataset={dataset}", f"run_dir={run_dir}", "data.val_limit=2", "train.epochs=3", *extra]
    )


def test_tiny_training_writes_checkpoints_logs_and_curves(dataset, tmp_path):
    result = fit(_config(dataset, tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    for name in ("best.pt", "last.pt", "config.yaml", "log.csv", "curves_ssim.png", "curves_psnr.png"):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").iterdir())
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "train_psnr", "train_ssim", "val_psnr", "val_ssim", "lr", "seconds", "best"} <= set(
        rows[0]
    )
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])  # it learns
    best = max(rows, key=lambda r: (float(r["val_ssim"]), float(r["val_psnr"])))
    assert result.best["epoch"] == int(best["epoch"])
    checkpoint = read_checkpoint(run / "best.pt")
    assert checkpoint["epoch"] == result.best["epoch"] and checkpoint["device"] == "cpu"
    assert checkpoint["model"]["kwargs"] == {"scale": 4, "blocks": 2, "channels": 16, "upsample_skip": False}
    assert checkpoint["config"]["train"]["epochs"] == 3
    model = load_model(run / "best.pt", device="cpu")
    assert model.name == "tiny_srresnet" and model.enhance(torch.rand(20, 24).numpy()).shape == (80, 96)


def test_train_splits_adds_the_validation_images_to_the_training_images(dataset):
    from medsr.data.degrade import Degradation
    from medsr.train.data import PatchSampler

    def sampler(*splits):
        return PatchSampler(
            dataset,
            patch_size=32,
            batch_size=4,
            patches_per_image=1,
            augment=False,
            degradation=Degradation(),
            device=torch.device("cpu"),
            splits=splits,
        )

    # 5 patients of 2 slices split 6,2,2 by slice count: 3 train, 1 val, 1 test patients
    assert (len(sampler("train")), len(sampler("train", "val"))) == (6, 8)


def test_a_run_fitted_on_val_keeps_its_last_epoch_and_says_val_was_trained_on(dataset, tmp_path):
    from medsr.data.manifest import read_manifest
    from medsr.data.provenance import check_held_out

    config = _config(dataset, tmp_path / "run", "data.train_splits=[train, val]", "train.epochs=2")
    result = fit(config, progress=False)
    assert result.best["epoch"] == 2  # in-sample validation selects nothing: the last epoch
    record = read_checkpoint(tmp_path / "run" / "best.pt")["trained_on"]
    assert record["fitted"] == ["train", "val"]
    overlap = check_held_out("m", record, read_manifest(dataset, split="val"), "val")
    assert set(overlap.seen.values()) == {"train"} and "in its training split" in overlap.describe()


def test_a_crashed_run_resumes_to_the_same_result(dataset, tmp_path):
    whole = fit(_config(dataset, tmp_path / "whole"), progress=False)

    def crash(epoch, row):
        if epoch == 1:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        fit(_config(dataset, tmp_path / "cut"), progress=False, after_epoch=crash)
    assert read_checkpoint(tmp_path / "cut" / "last.pt")["epoch"] == 1
    resumed = fit(_config(dataset, tmp_path / "cut"), resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    a = read_checkpoint(tmp_path / "whole" / "last.pt")["model"]["state_dict"]
    b = read_checkpoint(tmp_path / "cut" / "last.pt")["model"]["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_srgan_stage_starts_from_the_srresnet(dataset, tmp_path):
    fit(_config(dataset, tmp_path / "sr", "train.epochs=1"), progress=False)
    config = _config(
        dataset,
        tmp_path / "gan",
        "train.epochs=1",
        "train.stage=adversarial",
        f"train.init_from={tmp_path / 'sr' / 'best.pt'}",
        "adversarial.discriminator=ledig",
        "train.ema=0.9",
    )
    result = fit(config, progress=False)
    row = result.history[0]
    assert {"content", "adversarial", "d_loss", "d_real", "d_fake"} <= set(row)
    assert 0.0 < row["d_real"] < 1.0 and row["content"] > 0
    # every term and its share of the generator loss, per epoch, in log.csv
    logged = list(csv.DictReader(open(tmp_path / "gan" / "log.csv")))[0]
    assert float(logged["content_term"]) + float(logged["adversarial_term"]) + float(
        logged["pixel_term"]
    ) == pytest.approx(float(logged["loss"]), rel=1e-5)
    assert sum(float(logged[f"{t}_share"]) for t in ("content", "adversarial", "pixel")) == pytest.approx(1.0)
    assert float(logged["adversarial_share"]) > 1e-3  # Ledig's balance: the GAN term is not negligible
    checkpoint = read_checkpoint(tmp_path / "gan" / "last.pt")
    assert checkpoint["discriminator"]["variant"] == "ledig" and checkpoint["ema"] is not None
    assert "discriminator" in checkpoint["optimizers"]


def test_cli_train_errors_are_one_line(dataset, tmp_path, capsys):
    assert main(["train", str(TINY), "--set", f"run_dir={tmp_path / 'none'}", "--resume"]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    assert main(["train", str(TINY), "--set", "train.lr=fast"]) == 1
    assert capsys.readouterr().err.strip() == "medsr: error: train.lr: expected a number, got 'fast'"
    assert (
        main(["train", str(TINY), "--set", f"data.dataset={tmp_path}", "--set", f"run_dir={tmp_path / 'r'}"])
        == 1
    )
    assert "no manifest.csv" in capsys.readouterr().err


def _torchrun(dataset: Path, run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    """``medsr train`` of the tiny config in two gloo processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    settings = [
        f"data.dataset={dataset}",
        f"run_dir={run_dir}",
        "data.val_limit=2",
        "data.batch_size=2",
        *extra,
    ]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command += ["-m", "medsr", "train", str(TINY), *[a for s in settings for a in ("--set", s)]]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


def test_two_process_gloo_run_with_a_time_budget(dataset, tmp_path):
    done = _torchrun(
        dataset,
        tmp_path / "ddp",
        "train.time_budget=3s",
        "train.schedule=cosine",
        "data.patches_per_image=4000",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoint = read_checkpoint(tmp_path / "ddp" / "last.pt")
    assert checkpoint["clock"]["seconds"] >= 3.0  # both processes stopped at the same step (no hang)
    assert checkpoint["clock"]["iterations"] == sum(r["iterations"] for r in checkpoint["history"])
    assert len(checkpoint["history"]) == 1 and checkpoint["clock"]["iterations"] < 6000  # the budget ended it


def test_two_process_gloo_run(dataset, tmp_path):
    done = _torchrun(dataset, tmp_path / "ddp", "train.epochs=2")
    assert done.returncode == 0, done.stderr[-2000:]
    checkpoint = read_checkpoint(tmp_path / "ddp" / "last.pt")
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2
    # 6 training images, 2 per batch, 2 processes: one iteration each per epoch
    assert checkpoint["history"][0]["iterations"] == 1
    assert done.stdout.count("best epoch") == 1  # only rank 0 reports
