"""Models: interpolation baselines and networks behind one interface (``SRModel``).

build_model("bicubic", scale=4)      # a fresh model by name (networks: untrained; see models.registry)
list_models()                        # baselines, then the registered architectures
load_model("bicubic")                # a ready model: a baseline by name, or a checkpoint path
load_model("medsr-x4")               # the built-in pretrained x4 network (shipped, offline)
load_model("runs/x/best.pt")         # a trained network from a self-describing checkpoint
"""

from __future__ import annotations

from pathlib import Path

from medsr.choices import INTERPOLATIONS
from medsr.errors import MedsrError
from medsr.models.base import SRModel
from medsr.models.interpolation import InterpolationModel
from medsr.models.network import NetworkModel

__all__ = ["SRModel", "build_model", "list_models", "load_model"]


def list_models() -> list[str]:
    """The interpolation baselines, the built-in pretrained models, then every registered network
    architecture (untrained: ``build_model``)."""
    from medsr.models.builtin import builtin_names
    from medsr.models.registry import architectures

    return [*INTERPOLATIONS, *builtin_names(), *sorted(architectures())]


def build_model(name: str, *, scale: int = 4, device: str = "auto", **options) -> SRModel:
    """A new model by name: an interpolation baseline, or an untrained network of a registered
    architecture with ``options`` (its constructor arguments; the rest take their defaults)."""
    from medsr.models.builtin import builtin_names
    from medsr.models.registry import architectures, build_network

    if name in INTERPOLATIONS:
        return InterpolationModel(name, scale)
    if name in builtin_names():
        raise MedsrError(f"{name} is a trained built-in model: load it with load_model({name!r})")
    if name not in architectures():
        raise MedsrError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}, or a checkpoint path"
        )
    kwargs = {"scale": scale, **options}
    return NetworkModel(build_network(name, kwargs), name, scale, device=device, kwargs=kwargs, trained_on={})


def load_model(
    path_or_name: str | Path, *, device: str = "auto", scale: int | None = None, **kwargs
) -> SRModel:
    """A ready-to-use model: an interpolation baseline by name, or a network from a checkpoint.

    Args:
        path_or_name: ``nearest``/``bilinear``/``bicubic``/``lanczos``, a built-in pretrained
            model (``medsr-x4``: ``models.builtin``) or its ``.safetensors`` file, a ``.pt`` checkpoint
            written by ``medsr train`` (its EMA weights when it has them), or a ``.onnx`` file
            written by ``medsr export`` (run by ONNX Runtime).
        device: for networks: ``auto``, ``cpu`` or ``cuda``.
        scale: for baselines, the factor (default 4); for checkpoints, checked against theirs.
    """
    from medsr.models.builtin import SUFFIX, builtin_names, load_builtin

    text = str(path_or_name)
    if text in INTERPOLATIONS:
        return build_model(text, scale=scale or 4)
    if text in builtin_names() or text.lower().endswith(SUFFIX):
        model = load_builtin(text, device=device, **kwargs)
        _check_scale(model.scale, scale, text)
        return model
    if text.lower().endswith(".onnx") and Path(text).exists():
        from medsr.models.onnx_format import OnnxModel, check_onnx_options

        model = OnnxModel(text, **check_onnx_options(text, device, kwargs))
        _check_scale(model.scale, scale, text)
        return model
    from medsr.models.registry import architectures

    if text in architectures():
        raise MedsrError(
            f"{text} needs trained weights: give the path of a checkpoint (e.g. runs/<name>/best.pt)"
        )
    if not Path(text).exists():
        raise MedsrError(
            f"unknown model {text!r}; known models: {', '.join(list_models())}, or a checkpoint path"
        )
    from medsr.models.checkpoint import network_from, read_checkpoint, weights_digest

    checkpoint = read_checkpoint(text)
    entry = checkpoint["model"]
    module = network_from(checkpoint, text)
    model_scale = int(entry["kwargs"].get("scale", 4))
    _check_scale(model_scale, scale, text)
    name = str(checkpoint.get("config", {}).get("name") or entry["name"])
    model = NetworkModel(
        module,
        name,
        model_scale,
        device=device,
        source=text,
        kwargs=entry["kwargs"],
        intensity=checkpoint.get("intensity") or {},
        trained_on=_training_record(checkpoint),
        architecture=entry["name"],
        **kwargs,
    )
    model.weights_sha256 = weights_digest(checkpoint.get("ema") or entry["state_dict"])
    return model


def _check_scale(have: int, scale: int | None, source: str) -> None:
    """An error when a scale was asked for and the model at ``source`` (x``have``) has another."""
    if scale is not None and scale != have:
        raise MedsrError(f"{source} is a x{have} model, x{scale} was asked for")


def _training_record(checkpoint: dict) -> dict | None:
    """A trained checkpoint's ``trained_on`` record, or None (unknown) when it is missing or unusable."""
    from medsr.data.provenance import valid_record

    record = checkpoint.get("trained_on")
    return record if valid_record(record) else None
