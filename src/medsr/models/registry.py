"""The architecture registry: every trainable network, by name, with its options as the schema.

An architecture is one module under ``medsr/models/arch/`` whose network class carries one
decorator line::

    @architecture("span", scales=(2, 3, 4))
    class SPAN(SRNetwork):
        def __init__(self, scale: int = 4, channels: int = 48, blocks: int = 6) -> None: ...

The constructor's keyword arguments (type-annotated, with defaults) are the options a config may
give under ``model:`` (``model: {name: span, scale: 4, channels: 48}``); ``options`` lists them with
their types and defaults, and ``resolve_options`` checks a mapping against them. ``fit``,
``load_model``, checkpoints and the CLI all build networks through ``build_network``.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import math
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medsr.errors import MedsrError


class SRNetwork(nn.Module):
    """Base class of registered networks: (N, 1, h, w) in [0, 1] -> (N, 1, scale*h, scale*w), not clamped.

    Subclasses set ``scale`` and may override:
        skip_radius: LR pixels each way that a global interpolation skip reads (bilinear 1, bicubic 2).
        inference_form(): the network for inference (BatchNorm folded, re-parameterised branches
            merged); same outputs within float rounding; the default is an eval-mode copy.
    """

    scale: int = 4
    skip_radius: int = 0

    def inference_form(self) -> nn.Module:
        """An eval-mode copy computing the same function faster (the module itself is unchanged)."""
        return copy.deepcopy(self).eval()

    def receptive_radius(self) -> int:
        """LR pixels beyond which an input pixel no longer affects an output pixel (an upper bound:
        each convolution adds (k - 1) / 2 pixels at the resolution it runs at)."""
        return conv_radius(self.inference_form(), self.skip_radius)


def conv_radius(module: nn.Module, skip_radius: int = 0) -> int:
    """Receptive radius in LR pixels of a convolutional network with pixel-shuffle upsampling: each
    convolution adds (k - 1) / 2 * dilation pixels at the resolution it runs at, in the order the
    forward pass runs them (traced on an 8x8 input, so the order modules were declared in does not
    matter). An upper bound: parallel branches are counted as if in series."""
    order: list[nn.Module] = []
    hooks = [
        layer.register_forward_hook(lambda layer, inputs, output: order.append(layer))
        for layer in module.modules()
        if isinstance(layer, (nn.Conv2d, nn.PixelShuffle))
    ]
    try:
        parameter = next(module.parameters(), None)
        device = parameter.device if parameter is not None else "cpu"
        with torch.no_grad():
            module(torch.zeros(1, 1, 8, 8, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    radius, resolution = 0.0, 1
    for layer in order:
        if isinstance(layer, nn.Conv2d):
            radius += (layer.kernel_size[0] - 1) / 2 * layer.dilation[0] / resolution
        else:
            resolution *= layer.upscale_factor
    return int(math.ceil(max(radius, skip_radius)))


@dataclass(frozen=True)
class Architecture:
    """A registered network class, the scales it supports and its options (name -> (type, default))."""

    name: str
    network: type[SRNetwork]
    scales: tuple[int, ...]
    options: dict[str, tuple[Any, Any]]


_ARCHITECTURES: dict[str, Architecture] = {}
_LOADED = False


def architecture(name: str, *, scales: tuple[int, ...]) -> Callable[[type[SRNetwork]], type[SRNetwork]]:
    """Class decorator: register ``cls`` as ``name``; its ``__init__`` keyword arguments (``scale``
    first, each annotated, each with a default) become its options."""

    def decorate(cls: type[SRNetwork]) -> type[SRNetwork]:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        if not issubclass(cls, SRNetwork):
            raise TypeError(f"{cls.__name__} must derive from SRNetwork")
        _ARCHITECTURES[name] = Architecture(name, cls, tuple(scales), _constructor_options(cls))
        return cls

    return decorate


def _constructor_options(cls: type) -> dict[str, tuple[Any, Any]]:
    hints = typing.get_type_hints(cls.__init__)
    options = {}
    for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if parameter.default is inspect.Parameter.empty or parameter.name not in hints:
            raise TypeError(
                f"{cls.__name__}.__init__: {parameter.name} needs a type annotation and a default"
            )
        options[parameter.name] = (hints[parameter.name], parameter.default)
    if "scale" not in options:
        raise TypeError(f"{cls.__name__}.__init__ must take scale")
    return options


def architectures() -> dict[str, Architecture]:
    """Every registered architecture by name (the modules under ``medsr/models/arch`` are imported once)."""
    global _LOADED
    if not _LOADED:
        from medsr.models import arch

        for info in pkgutil.iter_modules(arch.__path__):
            importlib.import_module(f"{arch.__name__}.{info.name}")
        _LOADED = True
    return _ARCHITECTURES


def get_architecture(name: str) -> Architecture:
    """The architecture registered as ``name``; ``MedsrError`` naming the known ones otherwise."""
    known = architectures()
    if name not in known:
        raise MedsrError(f"unknown architecture {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def default_options(name: str) -> dict[str, Any]:
    """The options of architecture ``name`` with their defaults (``scale`` included)."""
    return {key: default for key, (_, default) in get_architecture(name).options.items()}


def build_network(name: str, options: dict[str, Any]) -> SRNetwork:
    """A new (untrained) network ``name`` with ``options`` (missing ones take their defaults).

    Raises:
        MedsrError: unknown architecture or option, unsupported scale, or a value the network refuses.
    """
    spec = get_architecture(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise MedsrError(f"{name}: unknown option {unknown[0]!r} (known: {', '.join(spec.options)})")
    scale = options.get("scale", spec.options["scale"][1])
    if scale not in spec.scales:
        raise MedsrError(f"{name}: scale must be one of {', '.join(map(str, spec.scales))}, got {scale}")
    try:
        return spec.network(**options)
    except (TypeError, ValueError) as exc:
        raise MedsrError(f"{name}: {exc}") from None
