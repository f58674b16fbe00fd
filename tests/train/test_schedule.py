"""Run length and learning-rate schedule: time budgets, iteration counts, cosine with warm-up."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch

from conftest import ROOT, make_ct_dataset
from medsr.errors import MedsrError
from medsr.models.checkpoint import read_checkpoint
from medsr.train import schedule
from medsr.train.config import load_config
from medsr.train.loop import fit
from medsr.train.schedule import Clock, lr_factor, parse_duration

TINY = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_ct_dataset(tmp_path_factory.mktemp("schedule"), 5, "6,2,2")


def _config(dataset: Path, run_dir: Path, *extra: str):
    """Tiny runs of 6 iterations per epoch (6 training slices x 8 patches / batch 8)."""
    return load_config(
        TINY,
        [
            f"data.dataset={dataset}",
            f"run_dir={run_dir}",
            "data.val_limit=2",
            "data.patches_per_image=8",
            "data.train_metric_images=1",
            *extra,
        ],
    )


@pytest.mark.parametrize(
    "text, seconds", [("20m", 1200), ("180s", 180), ("1h30m", 5400), ("90", 90), ("2.5m", 150), (45, 45)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "", "10 minutes", "-5s", "0s", "m", "1h30", "5s3m"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_cosine_with_warmup_rises_then_decays_to_the_floor():
    factors = [lr_factor("cosine", p / 100, 0.1, 0.01) for p in range(101)]
    assert factors[0] <= 1e-3 and factors[5] == pytest.approx(0.5) and factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))
    assert factors[55] == pytest.approx(0.01 + 0.99 * 0.5) and factors[100] == pytest.approx(0.01)
    assert lr_factor("constant", 0.7, 0.0, 0.01) == 1.0 and lr_factor("constant", 0.05, 0.1, 0.0) == 0.5


def test_clock_limits_and_progress(monkeypatch):
    now = itertools.count(0.0, 0.25)  # each reading of the clock: a quarter second later
    monkeypatch.setattr(schedule.Clock, "timer", staticmethod(lambda: next(now)))
    clock = Clock(iterations_per_epoch=10, epochs=3, seconds=2.0)
    clock.start()
    while not clock.finished():
        clock.tick()
    assert clock.done == 8 and clock.spent == pytest.approx(2.0) and clock.progress() == 1.0
    by_count = Clock(iterations_per_epoch=10, epochs=3, iterations=25, seconds=1e9)
    by_count.start()
    for _ in range(10):
        by_count.tick()
    assert by_count.progress() == pytest.approx(0.4) and not by_count.finished()
    assert Clock(iterations_per_epoch=10, epochs=3, done=30).finished()


def test_iterations_end_the_run_and_the_cosine_reaches_its_floor(dataset, tmp_path):
    config = _config(
        dataset, tmp_path / "run", "train.iterations=9", "train.schedule=cosine", "train.min_lr=1e-5"
    )
    result = fit(config, progress=False)
    assert [r["iterations"] for r in result.history] == [6, 3]
    checkpoint = read_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["clock"]["iterations"] == 9
    first, last = (r["lr"] for r in (result.history[0], result.history[-1]))
    expected_first = 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 5 / 9))  # the 6th step's rate
    assert first == pytest.approx(expected_first) and last == pytest.approx(
        1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 8 / 9))
    )


def test_a_time_budget_ends_the_run_with_a_checkpoint(dataset, tmp_path, monkeypatch):
    now = itertools.count(0.0, 0.5)
    monkeypatch.setattr(schedule.Clock, "timer", staticmethod(lambda: next(now)))
    config = _config(dataset, tmp_path / "run", "train.time_budget=4s", "train.schedule=cosine")
    result = fit(config, progress=False)
    checkpoint = read_checkpoint(tmp_path / "run" / "last.pt")
    # each epoch's seconds run to its end (timer readings: the start, every step, the end)
    assert checkpoint["clock"] == {"iterations": 7, "seconds": 4.5}
    assert [r["iterations"] for r in result.history] == [6, 1]  # validation and checkpoints not counted
    assert (tmp_path / "run" / "best.pt").is_file()
    again = fit(config, resume=True, progress=False)  # resuming a finished run trains nothing more
    assert len(again.history) == 2


def test_an_interrupted_scheduled_run_resumes_to_the_same_result(dataset, tmp_path):
    extra = ("train.iterations=15", "train.schedule=cosine", "train.warmup=0.2", "train.ema=0.9")
    whole = fit(_config(dataset, tmp_path / "whole", *extra), progress=False)

    def crash(epoch, row):
        if epoch == 1:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        fit(_config(dataset, tmp_path / "cut", *extra), progress=False, after_epoch=crash)
    resumed = fit(_config(dataset, tmp_path / "cut", *extra), resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(resumed.history) == strip(whole.history)
    a = read_checkpoint(tmp_path / "whole" / "last.pt")
    b = read_checkpoint(tmp_path / "cut" / "last.pt")
    assert all(torch.equal(a["ema"][k], b["ema"][k]) for k in a["ema"])


def test_a_scheduled_run_cannot_be_lengthened_on_resume(dataset, tmp_path):
    fit(_config(dataset, tmp_path / "run", "train.epochs=1", "train.schedule=cosine"), progress=False)
    with pytest.raises(MedsrError, match="train.epochs: 1 in the run, 2 now"):
        fit(
            _config(dataset, tmp_path / "run", "train.epochs=2", "train.schedule=cosine"),
            resume=True,
            progress=False,
        )
    fit(_config(dataset, tmp_path / "flat", "train.epochs=1"), progress=False)
    assert (
        len(fit(_config(dataset, tmp_path / "flat", "train.epochs=2"), resume=True, progress=False).history)
        == 2
    )


def test_what_may_change_on_resume_depends_on_the_schedule(dataset, tmp_path):
    flat = ("train.schedule=constant", "train.iterations=6")
    fit(_config(dataset, tmp_path / "flat", *flat), progress=False)
    longer = fit(_config(dataset, tmp_path / "flat", "train.iterations=12"), resume=True, progress=False)
    assert sum(r["iterations"] for r in longer.history) == 12  # a constant rate: a longer run is the same run
    cosine = ("train.schedule=cosine", "train.iterations=6", "train.epochs=5")
    fit(_config(dataset, tmp_path / "cos", *cosine), progress=False)
    for change, named in (
        ("train.iterations=12", "train.iterations: 6"),
        ("train.cuda_graph=true", "train.cuda_graph"),
    ):
        with pytest.raises(MedsrError, match=named):
            fit(_config(dataset, tmp_path / "cos", *cosine, change), resume=True, progress=False)
    # epochs do not count when iterations end the run
    fit(_config(dataset, tmp_path / "cos", *cosine, "train.epochs=9"), resume=True, progress=False)


def test_ema_warms_up():
    from medsr.train.loop import EMA

    ema = EMA(torch.nn.Linear(1, 1), 0.999)
    assert ema.decay_at(0) == pytest.approx(0.1) and ema.decay_at(90) == pytest.approx(0.91)
    assert ema.decay_at(10_000) == 0.999


def test_a_checkpoint_from_before_the_schedule_settings_still_resumes(dataset, tmp_path):
    run = tmp_path / "run"
    fit(_config(dataset, run, "train.epochs=1"), progress=False)
    for name in ("best.pt", "last.pt"):
        checkpoint = read_checkpoint(run / name)
        for key in (
            "time_budget",
            "iterations",
            "schedule",
            "warmup",
            "min_lr",
            "grad_clip",
            "teacher",
            "distill_weight",
        ):
            del checkpoint["config"]["train"][key]
        del checkpoint["clock"]
        torch.save(checkpoint, run / name)
    result = fit(_config(dataset, run, "train.epochs=2"), resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2]


@pytest.mark.parametrize("loss", ["l1", "charbonnier"])
def test_other_losses_and_clipping_train(dataset, tmp_path, loss):
    config = _config(
        dataset, tmp_path / "run", "train.epochs=2", f"train.pixel_loss={loss}", "train.grad_clip=0.01"
    )
    result = fit(config, progress=False)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
