"""No model is ever scored on patients it was trained on, and no resume mixes two runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import ROOT, write_ct_series
from medsr.cli import main
from medsr.data.manifest import patient_of, read_manifest
from medsr.data.patients import PatientRule
from medsr.data.prepare import KeepRule, PrepareOptions, prepare
from medsr.data.provenance import check_held_out, hash_patient
from medsr.data.split import SplitSpec
from medsr.errors import ConfigError, MedsrError
from medsr.evaluate import EvalOptions, evaluate
from medsr.models import load_model
from medsr.models.checkpoint import read_checkpoint, save_checkpoint
from medsr.train import loop
from medsr.train.config import load_config
from medsr.train.loop import fit

TINY = ROOT / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("leak")
    for index in range(5):
        write_ct_series(root / "src" / f"P{index}", 2, patient=f"P{index}")
    return root


def _prepare(sources: Path, name: str, seed: int) -> Path:
    options = PrepareOptions(
        size=None, min_size=64, keep=KeepRule("all"), split=SplitSpec.parse("6,2,2"), seed=seed, workers=1
    )
    prepare([sources / "src"], sources / name, options)
    return sources / name


@pytest.fixture(scope="module")
def datasets(sources) -> tuple[Path, Path]:
    """Two data sets of the same five patients, split with different seeds (so patients change split)."""
    first, second = _prepare(sources, "d0", 0), _prepare(sources, "d1", 1)
    tests = [{patient_of(r) for r in read_manifest(d, split="test")} for d in (first, second)]
    assert tests[0] != tests[1]
    return first, second


@pytest.fixture(scope="module")
def trained(datasets, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "sr"
    fit(_config(datasets[0], run), progress=False)
    return run


def _config(dataset: Path, run: Path, *extra: str):
    return load_config(
        TINY, [f"data.dataset={dataset}", f"run_dir={run}", "data.val_limit=2", "train.epochs=2", *extra]
    )


def test_checkpoints_record_the_data_set_and_hashed_patients_only(trained, datasets):
    checkpoint = read_checkpoint(trained / "best.pt")
    record = checkpoint["trained_on"]
    rows = read_manifest(datasets[0])
    train = sorted({patient_of(r) for r in rows if r["split"] == "train"})
    assert record["counts"] == {"train": len(train), "val": 1}
    assert record["patients"]["train"] == sorted(hash_patient(k, record["fingerprint"]) for k in train)
    assert b"PAT" not in (trained / "best.pt").read_bytes() and not any(
        k.encode() in (trained / "best.pt").read_bytes() for k in train
    )


@pytest.mark.parametrize(
    "change, named",
    [
        ("data.dataset", "data.dataset"),
        ("train.lr=0.0005", "train.lr"),
        ("seed=3", "seed"),
        ("model.channels=8", "model.channels"),
        ("train.stage=adversarial", "train.stage"),
    ],
)
def test_resume_refuses_another_run_naming_what_differs(trained, datasets, tmp_path, change, named):
    run = tmp_path / "copy"
    shutil.copytree(trained, run)
    extra = [] if change == "data.dataset" else [change]
    dataset = datasets[1] if change == "data.dataset" else datasets[0]
    with pytest.raises(MedsrError, match=rf"^--resume: .* is another run: {named}"):
        fit(_config(dataset, run, *extra), resume=True, progress=False)
    args = [
        "train",
        str(TINY),
        "--resume",
        "--set",
        f"data.dataset={dataset}",
        "--set",
        f"run_dir={run}",
        "--set",
        "data.val_limit=2",
        "--set",
        "train.epochs=2",
        *[a for e in extra for a in ("--set", e)],
    ]
    assert main(args) == 1


def test_resume_accepts_harmless_changes(trained, datasets, tmp_path):
    run = tmp_path / "more"
    shutil.copytree(trained, run)
    moved = tmp_path / "moved-dataset"
    shutil.copytree(datasets[0], moved)  # the same data set in another folder: same fingerprint
    result = fit(
        _config(moved, run, "train.epochs=3", "train.threads=1", "name=renamed"), resume=True, progress=False
    )
    assert [row["epoch"] for row in result.history] == [1, 2, 3]


def test_a_fresh_run_never_overwrites_an_earlier_one_silently(trained, datasets, tmp_path):
    run = tmp_path / "again"
    shutil.copytree(trained, run)
    with pytest.raises(MedsrError, match="already holds a run"):
        fit(_config(datasets[0], run), progress=False)
    fit(_config(datasets[0], run, "train.epochs=1"), overwrite=True, progress=False)
    assert (
        read_checkpoint(run / "last.pt")["epoch"] == 1
        and len(read_checkpoint(run / "best.pt")["history"]) == 1
    )


def test_evaluation_refuses_a_model_on_its_own_patients(trained, datasets, tmp_path):
    model = load_model(trained / "best.pt", device="cpu")
    with pytest.raises(
        MedsrError,
        match=r"tiny_srresnet saw 3 of the 3 patients of the train split during training \(in its training split",
    ):
        evaluate(datasets[0], [model], tmp_path / "own", EvalOptions(split="train", n_figures=0))
    # another data set of the same people: its test split holds one of the model's training patients
    with pytest.raises(MedsrError, match="saw 1 of the 1 patients of the test split"):
        evaluate(datasets[1], [model], tmp_path / "other", EvalOptions(n_figures=0))
    assert (
        main(
            [
                "evaluate",
                str(datasets[1]),
                "--model",
                str(trained / "best.pt"),
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 1
    )
    result = evaluate(datasets[0], [model], tmp_path / "held-out", EvalOptions(n_figures=0))
    assert result.summary["protocol"]["held_out"] is True


def test_allow_overlap_scores_it_and_says_so_in_bold(trained, datasets, tmp_path):
    out = tmp_path / "allowed"
    assert (
        main(
            [
                "evaluate",
                str(datasets[1]),
                "--model",
                str(trained / "best.pt"),
                "--out",
                str(out),
                "--allow-overlap",
            ]
        )
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"]["held_out"] is False
    assert summary["protocol"]["overlap"][0]["n_seen"] == 1
    assert (
        "**Not held out: tiny_srresnet was trained or validated on 1 of the 1 evaluated patients"
        in (out / "table.md").read_text()
    )


def test_a_checkpoint_without_a_record_cannot_be_shown_held_out(trained, datasets, tmp_path):
    checkpoint = read_checkpoint(trained / "best.pt")
    del checkpoint["trained_on"]
    checkpoint.pop("format"), checkpoint.pop("medsr_version")
    save_checkpoint(tmp_path / "old.pt", checkpoint)
    with pytest.raises(MedsrError, match="does not record which patients it was trained on"):
        evaluate(
            datasets[0],
            [load_model(tmp_path / "old.pt", device="cpu")],
            tmp_path / "e",
            EvalOptions(n_figures=0),
        )


def test_the_srgan_inherits_the_srresnet_patients(trained, datasets, tmp_path):
    gan = tmp_path / "gan"
    config = _config(
        datasets[0],
        gan,
        "train.epochs=1",
        "train.stage=adversarial",
        f"train.init_from={trained / 'best.pt'}",
        "adversarial.vgg_weights=random",
        "data.val_limit=1",
    )
    fit(config, progress=False)
    record = read_checkpoint(gan / "best.pt")["trained_on"]
    assert (
        record["init_from"]["fingerprint"]
        == read_checkpoint(trained / "best.pt")["trained_on"]["fingerprint"]
    )
    with pytest.raises(MedsrError, match="saw 1 of the 1 patients of the test split"):
        evaluate(
            datasets[1], [load_model(gan / "best.pt", device="cpu")], tmp_path / "e", EvalOptions(n_figures=0)
        )


def test_resume_refuses_when_the_starting_checkpoint_changed(trained, datasets, tmp_path):
    start = tmp_path / "start.pt"
    shutil.copy(trained / "best.pt", start)
    config = [
        "train.epochs=1",
        "train.stage=adversarial",
        f"train.init_from={start}",
        "adversarial.vgg_weights=random",
    ]
    fit(_config(datasets[0], tmp_path / "gan", *config), progress=False)
    retrained = read_checkpoint(start)  # the SRResNet was retrained: other weights at the same path
    for tensor in retrained["model"]["state_dict"].values():
        if tensor.is_floating_point():
            tensor.add_(0.01)
    retrained.pop("format"), retrained.pop("medsr_version")
    save_checkpoint(start, retrained)
    with pytest.raises(MedsrError, match="train.init_from: the checkpoint changed"):
        fit(
            _config(datasets[0], tmp_path / "gan", *config[1:], "train.epochs=2"), resume=True, progress=False
        )


def test_best_and_last_agree_after_a_kill_between_the_two_writes(datasets, tmp_path, monkeypatch):
    whole = fit(_config(datasets[0], tmp_path / "whole"), progress=False)
    assert (
        whole.best["epoch"] == 2
    )  # the precondition: the last epoch is the best one, so both files are written
    writes = []

    def killed(path, payload):
        writes.append(payload["epoch"])
        if writes.count(2) == 2:  # the second checkpoint write of epoch 2: the process dies before it
            raise KeyboardInterrupt
        save_checkpoint(path, payload)

    monkeypatch.setattr(loop, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(_config(datasets[0], tmp_path / "cut"), progress=False)
    monkeypatch.setattr(loop, "save_checkpoint", save_checkpoint)
    resumed = fit(_config(datasets[0], tmp_path / "cut"), resume=True, progress=False)
    best, last = read_checkpoint(tmp_path / "cut" / "best.pt"), read_checkpoint(tmp_path / "cut" / "last.pt")
    assert best["epoch"] == last["best"]["epoch"] == resumed.best["epoch"] == 2
    assert last["epoch"] == 2
    reference = read_checkpoint(tmp_path / "whole" / "best.pt")["model"]["state_dict"]
    assert all(torch.equal(best["model"]["state_dict"][k], reference[k]) for k in reference)


def test_the_same_files_under_another_patient_rule_are_still_caught(trained, sources, tmp_path):
    options = PrepareOptions(
        size=None,
        min_size=64,
        keep=KeepRule("all"),
        split=SplitSpec.parse("2,2,6"),
        seed=0,
        workers=1,
        patients=PatientRule("file"),
    )
    prepare([sources / "src"], tmp_path / "by-file", options)  # other patient keys, the same source files
    model = load_model(trained / "best.pt", device="cpu")
    with pytest.raises(
        MedsrError, match=r"trained or validated on the source files of \d+ of the 6 slices of the test split"
    ):
        evaluate(tmp_path / "by-file", [model], tmp_path / "e", EvalOptions(n_figures=0))


def test_patient_ids_are_compared_without_case_or_spacing(trained):
    record = read_checkpoint(trained / "best.pt")["trained_on"]
    rows = read_manifest(record["dataset"], split="train")
    shouted = [{**r, "patient_id": f"  {r['patient_id'].lower()} ", "source_id": ""} for r in rows]
    assert check_held_out("m", record, shouted, "train").seen  # p0 == P0


def test_a_damaged_or_empty_record_is_unknown_not_clean(trained, datasets, tmp_path):
    checkpoint = read_checkpoint(trained / "best.pt")
    checkpoint["trained_on"] = {}
    checkpoint.pop("format"), checkpoint.pop("medsr_version")
    save_checkpoint(tmp_path / "empty.pt", checkpoint)
    with pytest.raises(MedsrError, match="does not record which patients"):
        evaluate(
            datasets[0],
            [load_model(tmp_path / "empty.pt", device="cpu")],
            tmp_path / "e",
            EvalOptions(split="train", n_figures=0),
        )


def test_overwrite_never_removes_the_checkpoint_the_run_starts_from(trained, datasets, tmp_path):
    run = tmp_path / "same"
    shutil.copytree(trained, run)
    config = _config(
        datasets[0],
        run,
        "train.epochs=1",
        "train.stage=adversarial",
        f"train.init_from={run / 'best.pt'}",
        "adversarial.vgg_weights=random",
    )
    with pytest.raises(MedsrError, match="train.init_from: .* a fresh run would remove"):
        fit(config, overwrite=True, progress=False)
    assert (run / "best.pt").is_file() and (run / "last.pt").is_file()


def test_a_deleted_best_pt_is_restored_or_refused(trained, datasets, tmp_path):
    run = tmp_path / "nobest"
    shutil.copytree(trained, run)
    (run / "best.pt").unlink()  # its best epoch is the last one: restorable from last.pt
    fit(_config(datasets[0], run), resume=True, progress=False)
    assert read_checkpoint(run / "best.pt")["epoch"] == read_checkpoint(run / "last.pt")["best"]["epoch"]
    checkpoint = read_checkpoint(run / "last.pt")
    checkpoint["best"] = {**checkpoint["best"], "epoch": 1}  # the best epoch's weights are in best.pt only
    checkpoint.pop("format"), checkpoint.pop("medsr_version")
    save_checkpoint(run / "last.pt", checkpoint)
    (run / "best.pt").unlink()
    with pytest.raises(
        MedsrError, match="best.pt is missing and its weights \\(epoch 1\\) are in no other file"
    ):
        fit(_config(datasets[0], run, "train.epochs=3"), resume=True, progress=False)


def test_an_srgan_resumes_after_its_srresnet_file_is_gone(trained, datasets, tmp_path):
    start = tmp_path / "start.pt"
    shutil.copy(trained / "best.pt", start)
    config = ["train.stage=adversarial", f"train.init_from={start}", "adversarial.vgg_weights=random"]
    fit(_config(datasets[0], tmp_path / "gan", "train.epochs=1", *config), progress=False)
    start.unlink()
    result = fit(_config(datasets[0], tmp_path / "gan", *config), resume=True, progress=False)
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert read_checkpoint(tmp_path / "gan" / "last.pt")["trained_on"]["init_from"]["fingerprint"]


def test_a_distilled_student_inherits_its_teachers_patients(trained, datasets, tmp_path):
    student = tmp_path / "student"
    config = _config(
        datasets[0], student, "train.epochs=1", f"train.teacher={trained / 'best.pt'}", "data.val_limit=1"
    )
    result = fit(config, progress=False)
    assert {"pixel", "distill"} <= set(result.history[0])
    record = read_checkpoint(student / "best.pt")["trained_on"]
    teacher = read_checkpoint(trained / "best.pt")
    assert record["teacher"]["fingerprint"] == teacher["trained_on"]["fingerprint"]
    assert record["teacher"]["weights"] == loop.weights_digest(teacher["model"]["state_dict"])
    with pytest.raises(MedsrError, match="saw 1 of the 1 patients of the test split"):
        evaluate(
            datasets[1],
            [load_model(student / "best.pt", device="cpu")],
            tmp_path / "e",
            EvalOptions(n_figures=0),
        )


def test_resume_refuses_when_the_teacher_changed(trained, datasets, tmp_path):
    teacher = tmp_path / "teacher.pt"
    shutil.copy(trained / "best.pt", teacher)
    run = tmp_path / "student"
    fit(
        _config(datasets[0], run, "train.epochs=1", f"train.teacher={teacher}", "data.val_limit=1"),
        progress=False,
    )
    checkpoint = read_checkpoint(teacher)
    checkpoint["model"]["state_dict"] = {k: v + 0.5 for k, v in checkpoint["model"]["state_dict"].items()}
    save_checkpoint(teacher, checkpoint)
    with pytest.raises(MedsrError, match="train.teacher: the checkpoint changed"):
        fit(
            _config(datasets[0], run, "train.epochs=2", f"train.teacher={teacher}", "data.val_limit=1"),
            resume=True,
            progress=False,
        )


def test_a_teacher_of_another_intensity_mapping_is_refused_before_anything_is_removed(
    trained, datasets, tmp_path
):
    teacher = tmp_path / "teacher.pt"
    checkpoint = read_checkpoint(trained / "best.pt")
    checkpoint["intensity"] = {"ct_window": [-160, 240], "percentiles": [0, 100]}
    save_checkpoint(teacher, checkpoint)
    run = tmp_path / "student"
    fit(_config(datasets[0], run, "train.epochs=1", "data.val_limit=1"), progress=False)
    before = (run / "best.pt").read_bytes()
    with pytest.raises(ConfigError, match="train.teacher: .* was trained with intensity"):
        fit(
            _config(datasets[0], run, "train.epochs=1", f"train.teacher={teacher}"),
            overwrite=True,
            progress=False,
        )
    assert (run / "best.pt").read_bytes() == before
