"""The command line: every sub-command has help, and each option set has one source of truth.

The flags of ``medsr prepare`` and ``medsr evaluate`` and the keys of a run config's ``prepare:``
and ``evaluate:`` sections must set the fields of the library's options dataclasses
(``PrepareOptions``; ``EvalOptions`` and ``Degradation``) with the dataclasses' own defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from medsr import choices
from medsr.cli import build_parser, evaluate_options_from, prepare_options_from
from medsr.data.prepare import PrepareOptions
from medsr.evaluate import EvalOptions
from medsr.pipeline import EvaluateSection, PrepareSection, evaluate_options, prepare_options


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every sub-command and sub-sub-command of ``parser``, e.g. ("prepare",), ("mos", "create")."""
    found = []
    for name, sub in _subparsers(parser).items():
        found.append((*prefix, name))
        found += _commands(sub, (*prefix, name))
    return found


COMMANDS = _commands(build_parser())


def test_the_command_list_is_complete():
    names = {" ".join(c) for c in COMMANDS}
    assert {
        "sample-data",
        "fetch-tcia",
        "prepare",
        "info",
        "evaluate",
        "train",
        "enhance",
        "run",
        "mos",
        "mos create",
        "mos serve",
        "mos report",
        "mos backup",
    } <= names


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command):
    done = subprocess.run(
        [sys.executable, "-m", "medsr", *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: medsr " + " ".join(command))
    assert done.stderr == ""


# ------------------------------------------------------------------ helpers


def _options_of(command: str) -> dict[str, argparse.Action]:
    """The optional flags of a sub-command, by their long name (help excluded)."""
    parser = _subparsers(build_parser())[command]
    return {
        max(a.option_strings, key=len): a for a in parser._actions if a.option_strings and a.dest != "help"
    }


def _flat(value: object, prefix: str = "") -> dict[str, object]:
    """A dataclass as {dotted field: value}, nested dataclasses flattened."""
    if not dataclasses.is_dataclass(value):
        return {prefix[:-1]: value}
    flat: dict[str, object] = {}
    for item in dataclasses.fields(value):
        flat.update(_flat(getattr(value, item.name), f"{prefix}{item.name}."))
    return flat


def _changed(before: object, after: object) -> set[str]:
    a, b = _flat(before), _flat(after)
    return {key for key in a if a[key] != b[key]}


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


# ------------------------------------------------------------------ prepare

#: A value other than the default for each key of PrepareOptions.describe() (= each flag, each YAML key).
PREPARE_SAMPLES = {
    "size": "any",
    "min_size": "32",
    "sigma": "2.5",
    "keep": "top:5",
    "split": "1000,200,200",
    "stratify": "none",
    "patient_id": "folder",
    "score": "original-code",
    "seed": "7",
    "axes": "coronal,axial",
    "ct_window": "0,80",
    "percentiles": "1,99",
}
#: prepare flags that are no option of the data set (where, how fast, how strict).
PREPARE_RUN_FLAGS = {"--out", "--workers", "--strict"}


def _prepare_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["prepare", "SRC", "--out", "DATASET", *extra])


def _yaml_value(key: str, text: str) -> object:
    """The YAML form of a flag's value: a list for the windows, else what YAML reads."""
    return (
        [float(v) for v in text.split(",")] if key in ("ct_window", "percentiles") else yaml.safe_load(text)
    )


def test_prepare_flags_and_yaml_keys_are_the_keys_of_prepare_options():
    keys = set(PrepareOptions().describe())
    assert set(PREPARE_SAMPLES) == keys
    assert set(_options_of("prepare")) - PREPARE_RUN_FLAGS == {_flag(k) for k in keys}
    assert {f.name for f in dataclasses.fields(PrepareSection)} == keys


def test_prepare_flags_and_yaml_keys_have_the_library_defaults():
    library = PrepareOptions()
    assert prepare_options_from(_prepare_args()) == library
    assert prepare_options(PrepareSection()) == library
    assert PrepareOptions.from_description(library.describe()) == library


@pytest.mark.parametrize("key", sorted(PREPARE_SAMPLES))
def test_each_prepare_flag_and_yaml_key_sets_its_own_option(key):
    default = PrepareOptions().describe()
    text = PREPARE_SAMPLES[key]
    from_cli = prepare_options_from(_prepare_args(f"{_flag(key)}={text}"))
    from_yaml = prepare_options(PrepareSection(**{key: _yaml_value(key, text)}))
    for options in (from_cli, from_yaml):
        described = options.describe()
        assert {k for k in default if described[k] != default[k]} == {key}
    assert from_cli == from_yaml


def test_prepare_workers_default_to_all_cores():
    assert prepare_options_from(_prepare_args()).workers == PrepareOptions().workers
    assert prepare_options_from(_prepare_args("--workers", "0")).workers == PrepareOptions().workers
    assert prepare_options_from(_prepare_args("--workers", "3")).workers == 3


# ------------------------------------------------------------------ evaluate

#: Each evaluate flag that sets an option: (the EvalOptions field it sets, a value other than the default).
EVALUATE_FLAGS = {
    "--split": ("split", "val"),
    "--baseline": ("baseline", "nearest"),
    "--degradation": ("degradation.kind", "kspace"),
    "--scale": ("degradation.scale", "2"),
    "--taper": ("degradation.taper", "hann"),
    "--tukey-alpha": ("degradation.tukey_alpha", "0.25"),
    "--noise": ("degradation.noise", "rician"),
    "--noise-level": ("degradation.noise_level", "0.05"),
    "--blur-sigma": ("degradation.blur_sigma", "1.5"),
    "--seed": ("seed", "3"),
    "--crop-border": ("crop_border", "4"),
    "--figure": ("figure_ids", "img-1"),
    "--figures": ("n_figures", "5"),
    "--limit": ("limit", "10"),
    "--save-outputs": ("save_outputs", None),
    "--allow-overlap": ("allow_overlap", None),
    "--metrics": ("metrics", "ms_ssim,dists"),
}
#: evaluate flags that choose what is scored and where, not how.
EVALUATE_RUN_FLAGS = {"--model", "--out", "--device"}


def _evaluate_args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["evaluate", "DATASET", "--out", "OUT", *extra])


def test_evaluate_flags_and_yaml_keys_have_the_library_defaults():
    assert set(_options_of("evaluate")) - EVALUATE_RUN_FLAGS == set(EVALUATE_FLAGS)
    assert evaluate_options_from(_evaluate_args()) == EvalOptions()
    assert evaluate_options(EvaluateSection()) == EvalOptions()


@pytest.mark.parametrize("flag", sorted(EVALUATE_FLAGS))
def test_each_evaluate_flag_sets_its_own_field(flag):
    field, value = EVALUATE_FLAGS[flag]
    options = evaluate_options_from(
        _evaluate_args(flag) if value is None else _evaluate_args(f"{flag}={value}")
    )
    assert _changed(EvalOptions(), options) == {field}


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(EvaluateSection)])
def test_each_evaluate_yaml_key_sets_the_field_of_the_flag_of_its_name(key):
    field, value = EVALUATE_FLAGS[_flag(key)]
    options = evaluate_options(EvaluateSection(**{key: yaml.safe_load(value)}))
    assert _changed(EvalOptions(), options) == {field}
    assert options == evaluate_options_from(_evaluate_args(f"{_flag(key)}={value}"))


# ------------------------------------------------------------------ enhance, choices


def test_enhance_flags_have_the_library_defaults():
    from medsr.enhance import EnhanceOptions
    from medsr.models.network import PRECISIONS, NetworkModel

    args = build_parser().parse_args(["enhance", "IN", "--model", "bicubic", "-o", "OUT"])
    assert (args.tile, args.batch) == (EnhanceOptions().tile, EnhanceOptions().batch)
    assert args.precision == inspect.signature(NetworkModel).parameters["precision"].default
    assert _options_of("enhance")["--precision"].choices == PRECISIONS


def test_choices_are_the_values_the_library_accepts():
    from medsr.data import detail, patients, split
    from medsr.data.degrade import Degradation
    from medsr.data.prepare import KeepRule, check_options
    from medsr.io import volume
    from medsr.io.intensity import IntensityPolicy
    from medsr.models import interpolation, list_models
    from medsr.train.config import DegradationConfig

    assert tuple(detail.SCORES) == choices.DETAIL_SCORES
    assert patients.KINDS == choices.PATIENT_RULE_KINDS
    assert tuple(volume.AXES) == choices.SLICE_AXES
    assert split.SPLIT_NAMES == choices.SPLIT_NAMES
    assert tuple(interpolation._FLAGS) == choices.INTERPOLATIONS and set(choices.INTERPOLATIONS) <= set(
        list_models()
    )
    assert {s for s in range(1, 17) if _accepts(Degradation, scale=s)} == set(choices.SCALES)
    for name, values in (
        ("kind", choices.DEGRADATION_KINDS),
        ("taper", choices.TAPERS),
        ("noise", choices.NOISES),
    ):
        assert all(_accepts(Degradation, **{name: v}) for v in values) and not _accepts(
            Degradation, **{name: "other"}
        )
        assert typing.get_args(typing.get_type_hints(DegradationConfig)[name]) == values
    assert all(IntensityPolicy(ct_window=name) for name in choices.CT_WINDOW_NAMES)
    assert {KeepRule.parse(text).kind for text in ("above-mean", "all", "top:3", "min:0.5")} == set(
        choices.KEEP_RULE_KINDS
    )
    for stratify in choices.STRATIFY:
        check_options(PrepareOptions(stratify=stratify))


def _accepts(cls: type, **kwargs: object) -> bool:
    try:
        cls(**kwargs)
    except ValueError:
        return False
    return True


def test_bad_option_values_are_refused_with_the_flag_named(capsys):
    from medsr.cli import main

    for argv, flag in (
        (["prepare", "S", "--out", "D", "--split", "1,2"], "--split"),
        (["prepare", "S", "--out", "D", "--axes", "oblique"], "--axes"),
        (["evaluate", "D", "--out", "O", "--scale", "5"], "--scale"),
        (["evaluate", "D", "--out", "O", "--figures", "-1"], "--figures"),
    ):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2 and flag in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "D",
                "--out",
                str(Path("O")),
                "--degradation",
                "kspace",
                "--taper",
                "tukey",
                "--tukey-alpha",
                "0",
            ]
        )
        == 1
    )
    assert "tukey_alpha must be in (0, 1]" in capsys.readouterr().err
