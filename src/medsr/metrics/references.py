"""The reference packages' LPIPS (``lpips`` 0.1.4) and DISTS (``DISTS-pytorch`` 0.1) networks,
built on a given VGG16 trunk, for the tests and the benchmark that compare medsr against them.

Both packages build their trunk with ``torchvision.models.vgg16``, and torchvision does not install
beside the CPU build of torch; a stand-in ``torchvision`` module (present only while the package is
imported and built) hands them the trunk's layers in torchvision's layout. ``make install`` installs
both packages with ``--no-deps``.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable

from torch import nn

from medsr.metrics.lpips import VGG16, LPIPSNet


def _with_torchvision_stand_in(trunk: LPIPSNet, package: str, build: Callable[[types.ModuleType], nn.Module]):
    """``build(module)`` with ``package`` imported afresh while ``torchvision`` is a stand-in whose
    ``models.vgg16`` returns ``trunk``'s convolutions as torchvision's 31-module ``features``."""
    layers, convs = [], iter(trunk.convs)
    for width in VGG16:
        layers += [nn.MaxPool2d(2, 2)] if width == "M" else [next(convs), nn.ReLU(inplace=False)]
    features = nn.Sequential(*[*layers, nn.MaxPool2d(2, 2)])
    vision, models = types.ModuleType("torchvision"), types.ModuleType("torchvision.models")
    models.vgg16 = lambda pretrained=False, **_: types.SimpleNamespace(features=features)
    vision.models, vision.transforms = models, types.ModuleType("torchvision.transforms")
    stand_ins = {
        "torchvision": vision,
        "torchvision.models": models,
        "torchvision.transforms": vision.transforms,
    }
    saved = {key: sys.modules.get(key) for key in stand_ins}
    sys.modules.update(stand_ins)
    for name in [n for n in sys.modules if n.split(".")[0] == package.split(".")[0]]:
        del sys.modules[name]  # imported afresh, so that it takes the stand-in
    try:
        return build(importlib.import_module(package)).eval()
    finally:
        for key, value in saved.items():
            sys.modules.pop(key, None) if value is None else sys.modules.__setitem__(key, value)


def reference_lpips(trunk: LPIPSNet) -> nn.Module:
    """``lpips.LPIPS(net="vgg")`` with its own v0.1 heads and ``trunk``'s VGG16 weights; call it as
    ``network(x, y, normalize=True)`` on (N, 3, H, W) in [0, 1].

    Raises:
        ImportError: ``lpips`` is not installed.
    """
    return _with_torchvision_stand_in(
        trunk, "lpips", lambda m: m.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
    )


def reference_dists(trunk: LPIPSNet) -> nn.Module:
    """``DISTS_pytorch.DISTS`` (its alpha and beta left random) with ``trunk``'s VGG16 weights.

    Raises:
        ImportError: ``DISTS-pytorch`` is not installed.
    """
    return _with_torchvision_stand_in(trunk, "DISTS_pytorch.DISTS_pt", lambda m: m.DISTS(load_weights=False))
