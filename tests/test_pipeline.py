"""``medsr run`` end to end on a tiny local DICOM tree: stages, skipping, --from, and the report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import write_ct_series
from medsr.cli import main
from medsr.data.manifest import read_manifest
from medsr.data.provenance import dataset_fingerprint
from medsr.errors import ConfigError
from medsr.models.checkpoint import read_checkpoint
from medsr.pipeline import load_run_config, run_pipeline

ROOT = Path(__file__).parent.parent


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    for index in range(6):
        write_ct_series(root / "tree" / f"P{index}" / "s1", 2, patient=f"P{index}")
    config = root / "run.yaml"
    common = ["data.val_limit=2", "train.epochs=1", "data.batch_size=4"]
    config.write_text(
        f"""
name: mini
run_dir: {root / "run"}
description: A tiny run for the tests.
data: {{source: folder, path: {root / "tree"}}}
prepare: {{size: any, min_size: 64, keep: all, split: "0.5,0.25,0.25", seed: 1}}
evaluate: {{figures: 1}}
srresnet: {{config: {ROOT / "configs" / "tiny.yaml"}, set: {json.dumps(common)}}}
srgan: {{config: {ROOT / "configs" / "tiny_srgan.yaml"}, set: {json.dumps(common + ["adversarial.vgg_weights=random"])}}}
pretrained: [medsr-x4]
"""
    )
    report = run_pipeline(config, progress=False)
    return root, config, report


def test_every_stage_writes_its_outputs_and_the_report(finished_run):
    root, config, report = finished_run
    run = root / "run"
    assert report == run / "report.html"
    for path in (
        "dataset/manifest.csv",
        "table1-val/table.md",
        "srresnet/best.pt",
        "srgan/best.pt",
        "eval-test/summary.json",
        "report.md",
        "stages/report.json",
    ):
        assert (run / path).exists(), path
    summary = json.loads((run / "eval-test" / "summary.json").read_text())
    assert {"nearest", "bilinear", "bicubic", "srresnet", "srgan", "medsr-x4"} == set(summary["methods"])
    assert summary["protocol"]["held_out"] and "| medsr-x4 |" in (run / "report.md").read_text()
    page = report.read_text()
    assert "Table 1" in page and "Table 2" in page and "Data provenance" in page and "Environment" in page
    assert "data:image/png;base64," in page
    assert not re.search(r'src="(?!data:)', page)  # self-contained: no external images or scripts
    markdown = (run / "report.md").read_text()
    assert "| srresnet |" in markdown and "wall time: srresnet" in markdown
    assert (
        "**medsr-x4** (pretrained, inference only: built-in medsr-x4 version 1" in markdown
        and f"none of the {summary['n_patients']} test patients or their source files are in it" in markdown
    )


def test_a_second_run_skips_finished_stages_and_from_forces_the_rest(finished_run):
    root, config, _ = finished_run
    stages = root / "run" / "stages"
    before = {p.name: json.loads(p.read_text())["seconds"] for p in stages.glob("*.json")}
    best = (root / "run" / "srresnet" / "best.pt").stat().st_mtime_ns
    run_pipeline(config, progress=False)
    assert (root / "run" / "srresnet" / "best.pt").stat().st_mtime_ns == best  # not retrained
    assert {p.name: json.loads(p.read_text())["seconds"] for p in stages.glob("*.json")} == before
    evaluated = (root / "run" / "eval-test" / "summary.json").stat().st_mtime_ns
    assert main(["run", str(config), "--from", "evaluate"]) == 0
    assert (root / "run" / "eval-test" / "summary.json").stat().st_mtime_ns > evaluated
    assert (root / "run" / "srresnet" / "best.pt").stat().st_mtime_ns == best


def test_run_configs_are_validated(tmp_path):
    for name in ("demo.yaml", "paper.yaml"):
        assert load_run_config(ROOT / "configs" / name).name
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprepare: {sizes: 512}\n")
    with pytest.raises(ConfigError, match="prepare.sizes: unknown key"):
        load_run_config(bad)
    bad.write_text("name: x\ndata: {source: folder}\n")
    with pytest.raises(ConfigError, match="data.path"):
        load_run_config(bad)


def test_changed_split_retrains_afresh_instead_of_resuming_a_model_of_other_patients(tmp_path, capsys):
    """The reviewer's reproduction: run, change prepare's split, run again. The old SRResNet must not
    be resumed (it trained on patients that are now test patients) and nothing of it may remain."""
    for index in range(6):
        write_ct_series(tmp_path / "tree" / f"P{index}" / "s1", 2, patient=f"P{index}")
    config = tmp_path / "run.yaml"
    text = f"""
name: split-change
run_dir: {tmp_path / "run"}
data: {{source: folder, path: {tmp_path / "tree"}}}
prepare: {{size: any, min_size: 64, keep: all, split: "0.5,0.25,0.25", seed: SEED}}
evaluate: {{figures: 0}}
srresnet: {{config: {ROOT / "configs" / "tiny.yaml"}, set: ["data.val_limit=2", "train.epochs=1", "data.batch_size=4"]}}
srgan: {{enabled: false}}
"""
    config.write_text(text.replace("SEED", "1"))
    run_pipeline(config, progress=False)
    first = read_checkpoint(tmp_path / "run" / "srresnet" / "best.pt")["trained_on"]
    config.write_text(text.replace("SEED", "2"))
    run_pipeline(config, progress=True)
    err = capsys.readouterr().err
    assert (
        "[srresnet] inputs changed (data.dataset:" in err
        and "starting afresh" in err
        and "resuming" not in err
    )
    second = read_checkpoint(tmp_path / "run" / "srresnet" / "best.pt")["trained_on"]
    assert second["fingerprint"] != first["fingerprint"]
    assert second["fingerprint"] == dataset_fingerprint(read_manifest(tmp_path / "run" / "dataset"))
    summary = json.loads((tmp_path / "run" / "eval-test" / "summary.json").read_text())
    assert summary["protocol"]["held_out"] is True


def test_an_interrupted_forced_stage_reruns_every_later_stage_and_config_files_count(
    tmp_path, capsys, monkeypatch
):
    from medsr.train import loop

    for index in range(6):
        write_ct_series(tmp_path / "tree" / f"P{index}" / "s1", 2, patient=f"P{index}")
    training = tmp_path / "sr.yaml"
    training.write_text((ROOT / "configs" / "tiny.yaml").read_text())
    config = tmp_path / "run.yaml"
    config.write_text(f"""
name: forced
run_dir: {tmp_path / "run"}
data: {{source: folder, path: {tmp_path / "tree"}}}
prepare: {{size: any, min_size: 64, keep: all, split: "0.5,0.25,0.25", seed: 1}}
evaluate: {{figures: 0}}
srresnet: {{config: {training}, set: ["data.val_limit=2", "train.epochs=2", "data.batch_size=4"]}}
srgan: {{enabled: false}}
""")
    run_pipeline(config, progress=False)
    fit = loop.fit

    def killed(*args, **kwargs):
        def die(epoch, row):
            raise KeyboardInterrupt

        return fit(*args, **kwargs, after_epoch=die)

    monkeypatch.setattr(loop, "fit", killed)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, force_from="srresnet", progress=False)
    monkeypatch.setattr(loop, "fit", fit)
    capsys.readouterr()
    run_pipeline(config, progress=True)
    err = capsys.readouterr().err
    assert "[srresnet] resuming" in err and "[evaluate] running" in err and "[report] running" in err
    # the training config's contents are an input of the stage, not just its path
    training.write_text(training.read_text().replace("lr: 1.0e-3", "lr: 5.0e-4"))
    run_pipeline(config, progress=True)
    err = capsys.readouterr().err
    assert (
        "[srresnet] inputs changed (train.lr: 0.001 in the run, 0.0005 now" in err
        and "[evaluate] running" in err
    )
    # files added to the source folder are an input of prepare
    write_ct_series(tmp_path / "tree" / "P9" / "s1", 2, patient="P9")
    run_pipeline(config, progress=True)
    assert "[prepare] running" in capsys.readouterr().err


def _run_config(tmp_path: Path, extra: str) -> Path:
    """A run config over a missing folder (nothing may be read) with the tiny trainings, plus ``extra``."""
    config = tmp_path / "run.yaml"
    sections = {
        "data": f"{{source: folder, path: {tmp_path / 'tree'}}}",
        "srresnet": f"{{config: {ROOT / 'configs' / 'tiny.yaml'}}}",
        "srgan": f"{{config: {ROOT / 'configs' / 'tiny_srgan.yaml'}}}",
    }
    for line in extra.strip().splitlines():
        key, _, value = line.partition(":")
        sections[key.strip()] = value.strip()
    config.write_text(
        f"name: checked\nrun_dir: {tmp_path / 'run'}\n" + "".join(f"{k}: {v}\n" for k, v in sections.items())
    )
    return config


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            'prepare: {stratify: modality, split: "10,5,5"}',
            "prepare: stratifying needs a split given as fractions",
        ),
        ("prepare: {keep: best}", "prepare: keep rule must be"),
        (
            "evaluate: {baseline: srresnet}",
            "evaluate.baseline: must be one of nearest, bilinear, bicubic, lanczos",
        ),
        (
            "evaluate: {degradation: kspace, taper: tukey, tukey_alpha: 0}",
            r"evaluate: tukey_alpha must be in \(0, 1\]",
        ),
        ("evaluate: {degradation: blur-noise, noise: uniform}", "evaluate.noise: expected one of"),
        ("evaluate: {figures: -1}", "evaluate.figures: must be at least 0"),
        ("evaluate: {scale: 2}", "srresnet: the model is x4 but evaluate.scale is 2"),
        (
            f"srresnet: {{config: {ROOT / 'configs' / 'tiny.yaml'}, set: [train.lr=fast]}}",
            "srresnet: train.lr: expected a number",
        ),
        ("srgan: {config: missing.yaml}", "srgan: missing.yaml: no such config file"),
        ("srresnet: {enabled: false}", "srgan.enabled: SRGAN starts from the SRResNet"),
        ("pretrained: [srgan]", r"pretrained\[0\]: 'srgan' is already a method of this run"),
        ("pretrained: [medsr-x4, medsr-x4]", r"pretrained\[1\]: 'medsr-x4' is already a method"),
        (
            f"pretrained: [medsr-x4, {ROOT / 'src/medsr/models/weights/medsr-x4.safetensors'}]",
            r"pretrained\[1\]: .* is already a method of this run \(medsr-x4\)",
        ),
    ],
)
def test_every_section_is_validated_when_the_run_config_is_loaded(tmp_path, extra, message):
    config = _run_config(tmp_path, extra)
    with pytest.raises(ConfigError, match=message):
        load_run_config(config)
    assert main(["run", str(config)]) == 1
    assert not (tmp_path / "run").exists()  # refused before the first stage


def test_run_config_defaults_and_disabled_trainings(tmp_path):
    from medsr.pipeline import resolve_run_config

    prepare, evaluation, trainings = resolve_run_config(load_run_config(_run_config(tmp_path, "")))
    assert str(prepare.split) == "0.7,0.15,0.15" and evaluation.n_figures == 2
    assert set(trainings) == {"srresnet", "srgan"}
    assert trainings["srgan"].train.init_from == str(tmp_path / "run" / "srresnet" / "best.pt")
    assert trainings["srresnet"].data.dataset == str(tmp_path / "run" / "dataset")
    config = _run_config(tmp_path, "srresnet: {enabled: false}\nsrgan: {enabled: false}")
    assert resolve_run_config(load_run_config(config))[2] == {}


def test_layout_names_are_those_of_the_modules_that_write_them():
    from medsr import layout
    from medsr.data import manifest, sample
    from medsr.eval_outputs import INDEX
    from medsr.mos import db, study
    from medsr.train import resume

    assert layout.MANIFEST == manifest.MANIFEST and layout.SAMPLE_SOURCES == sample.SOURCES_CSV
    assert Path(layout.EVAL_OUTPUTS_INDEX) == INDEX
    assert (layout.BEST_CHECKPOINT, layout.LAST_CHECKPOINT) == (resume.BEST, resume.LAST)
    assert layout.STUDY_FILE == study.STUDY_FILE and layout.MOS_DATABASE == db.SQLITE_NAME
    assert layout.stage_record("RUN", "data") == Path("RUN/stages/data.json")


@pytest.mark.parametrize("module", ["cli.py", "pipeline.py", "data/prepare.py", "report/html.py"])
def test_run_folder_names_are_spelled_only_in_layout(module):
    """No file or folder name of ``medsr.layout`` (those with a dot or a dash) as a string in the code."""
    import ast

    from medsr import layout

    names = {
        v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str) and ("." in v or "-" in v)
    }
    tree = ast.parse((ROOT / "src" / "medsr" / module).read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    spelled = {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
    } & names
    assert not spelled


def test_until_stops_after_the_named_stage(tmp_path, capsys):
    for index in range(4):
        write_ct_series(tmp_path / "tree" / f"P{index}" / "s1", 2, patient=f"P{index}")
    config = _run_config(tmp_path, "prepare: {size: any, min_size: 64, keep: all, split: '0.5,0.25,0.25'}")
    assert main(["run", str(config), "--until", "prepare"]) == 0
    stages = tmp_path / "run" / "stages"
    assert sorted(p.stem for p in stages.glob("*.json")) == ["data", "prepare"]
    assert (tmp_path / "run" / "dataset" / "manifest.csv").is_file()
    assert "done up to prepare" in capsys.readouterr().out


def test_a_missing_pretrained_model_stops_a_run_that_would_score_it_before_its_first_stage(tmp_path, capsys):
    for index in range(4):
        write_ct_series(tmp_path / "tree" / f"P{index}" / "s1", 2, patient=f"P{index}")
    extra = "prepare: {size: any, min_size: 64, keep: all, split: '0.5,0.25,0.25'}\npretrained: [nope]"
    config = _run_config(tmp_path, extra)
    assert main(["run", str(config)]) == 1
    assert "pretrained[0]: 'nope' is neither a built-in model (medsr-x4" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["run", str(config), "--until", "prepare"]) == 0  # the data set needs no model
