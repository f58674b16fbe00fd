"""The model registry: interpolation baselines and networks behind one interface (``SRModel``).

build_model("bicubic", scale=4)      # a fresh model by registry name (networks: untrained)
list_models()                        # names known to the registry
load_model("bicubic")                # a ready model: a baseline by name, or a checkpoint path
load_model("runs/x/best.pt")         # a trained network from a self-describing checkpoint
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from medsr.choices import INTERPOLATIONS
from medsr.errors import MedsrError
from medsr.models.base import SRModel
from medsr.models.interpolation import InterpolationModel
from medsr.models.network import NetworkModel
from medsr.models.srresnet import SRResNet

__all__ = ["ARCHITECTURES", "SRModel", "build_model", "list_models", "load_model", "register_model"]

_REGISTRY: dict[str, Callable[..., SRModel]] = {}
#: Network architectures by name (the ``model.name`` of a checkpoint).
ARCHITECTURES: dict[str, type[nn.Module]] = {"srresnet": SRResNet}


def register_model(name: str) -> Callable[[Callable[..., SRModel]], Callable[..., SRModel]]:
    """Decorator: make ``factory(**kwargs) -> SRModel`` buildable as ``name``."""

    def decorate(factory: Callable[..., SRModel]) -> Callable[..., SRModel]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return decorate


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def build_model(name: str, **kwargs) -> SRModel:
    """A new model by registry name; ``kwargs`` go to its constructor (networks start untrained)."""
    if name not in _REGISTRY:
        raise MedsrError(
            f"unknown model {name!r}; known models: {', '.join(list_models())}, or a checkpoint path"
        )
    return _REGISTRY[name](**kwargs)


def load_model(
    path_or_name: str | Path, *, device: str = "auto", scale: int | None = None, **kwargs
) -> SRModel:
    """A ready-to-use model: an interpolation baseline by name, or a network from a checkpoint.

    Args:
        path_or_name: ``nearest``/``bilinear``/``bicubic``/``lanczos``, or a ``.pt`` checkpoint
            written by ``medsr train`` (its EMA weights when it has them).
        device: for networks: ``auto``, ``cpu`` or ``cuda``.
        scale: for baselines, the factor (default 4); for checkpoints, checked against theirs.
    """
    text = str(path_or_name)
    if text in INTERPOLATIONS:
        return build_model(text, scale=scale or 4)
    if text in ARCHITECTURES:
        raise MedsrError(
            f"{text} needs trained weights: give the path of a checkpoint (e.g. runs/<name>/best.pt)"
        )
    if not Path(text).exists():
        raise MedsrError(
            f"unknown model {text!r}; known models: {', '.join(list_models())}, or a checkpoint path"
        )
    from medsr.models.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(text)
    entry = checkpoint["model"]
    if entry["name"] not in ARCHITECTURES:
        raise MedsrError(f"{text}: unknown architecture {entry['name']!r}")
    module = ARCHITECTURES[entry["name"]](**entry["kwargs"])
    module.load_state_dict(checkpoint.get("ema") or entry["state_dict"])
    model_scale = int(entry["kwargs"].get("scale", 4))
    if scale is not None and scale != model_scale:
        raise MedsrError(f"{text} is a x{model_scale} model, x{scale} was asked for")
    name = str(checkpoint.get("config", {}).get("name") or entry["name"])
    return NetworkModel(
        module,
        name,
        model_scale,
        device=device,
        source=text,
        kwargs=entry["kwargs"],
        intensity=checkpoint.get("intensity") or {},
        trained_on=_training_record(checkpoint),
        **kwargs,
    )


def _training_record(checkpoint: dict) -> dict | None:
    """A trained checkpoint's ``trained_on`` record, or None (unknown) when it is missing or unusable."""
    from medsr.data.provenance import valid_record

    record = checkpoint.get("trained_on")
    return record if valid_record(record) else None


for _method in INTERPOLATIONS:
    register_model(_method)(lambda scale=4, _m=_method: InterpolationModel(_m, scale))


@register_model("srresnet")
def _srresnet(scale: int = 4, blocks: int = 16, channels: int = 64, device: str = "auto") -> SRModel:
    return NetworkModel(
        SRResNet(scale, blocks, channels),
        "srresnet",
        scale,
        device=device,
        kwargs={"scale": scale, "blocks": blocks, "channels": channels},
        trained_on={},
    )
