"""The model registry: interpolation baselines and (trained) networks behind one interface.

    build_model("bicubic", scale=4)      # a fresh model by registry name
    list_models()                        # names known to the registry
    load_model("bicubic")                # a ready model, by name
"""

from __future__ import annotations

from collections.abc import Callable

from medsr.errors import MedsrError
from medsr.models.base import SRModel
from medsr.models.interpolation import INTERPOLATIONS, InterpolationModel

__all__ = ["SRModel", "build_model", "list_models", "load_model", "register_model"]

_REGISTRY: dict[str, Callable[..., SRModel]] = {}


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
    """A new model by registry name; ``kwargs`` go to its constructor (e.g. ``scale=4``)."""
    if name not in _REGISTRY:
        raise MedsrError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return _REGISTRY[name](**kwargs)


def load_model(name: str, **kwargs) -> SRModel:
    """A ready-to-use model by registry name (interpolation baselines need no weights)."""
    return build_model(name, **kwargs)


for _method in INTERPOLATIONS:
    register_model(_method)(lambda scale=4, _m=_method: InterpolationModel(_m, scale))
