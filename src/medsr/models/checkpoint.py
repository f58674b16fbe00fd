"""Self-describing checkpoints: everything needed to rebuild and resume, written atomically.

    {"format": "medsr-checkpoint-1", "medsr_version": ..., "model": {"name", "kwargs", "state_dict"},
     "ema": state_dict | None, "discriminator": {"kwargs", "state_dict"} | None,
     "optimizers": {...}, "config": {...}, "epoch": int, "history": [...], "best": {...},
     "rng": {"torch": ByteTensor, "cuda": [...]}}

Only plain containers, numbers, strings and tensors are stored, so ``torch.load(weights_only=True)``
reads them without running code from the file.
"""

from __future__ import annotations

import hashlib
import os  # noqa: F401  (tests patch checkpoint.os.replace, which fsutil.atomic_path calls)
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from medsr import __version__
from medsr.errors import MedsrError
from medsr.fsutil import atomic_path

FORMAT = "medsr-checkpoint-1"


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write ``payload`` (see the module docstring) to ``path`` atomically: a kill at any moment
    leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "medsr_version": __version__, **payload}, tmp)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint dict; raises ``MedsrError`` with the reason if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise MedsrError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise MedsrError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise MedsrError(
            f"{path}: not a medsr checkpoint (format {data.get('format') if isinstance(data, dict) else '?'})"
        )
    return data


def model_entry(name: str, kwargs: dict, module: nn.Module) -> dict:
    """The ``model`` entry of a checkpoint for ``module`` (unwrapped from DDP/compile)."""
    return {"name": name, "kwargs": dict(kwargs), "state_dict": unwrap(module).state_dict()}


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(module, "module") and isinstance(module.module, nn.Module):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            return module


def network_from(checkpoint: dict, source: str | Path = "checkpoint") -> nn.Module:
    """The trained generator of a checkpoint (its EMA weights when it has them), built through the
    architecture registry, in training form on the CPU.

    Raises:
        MedsrError: unknown architecture or options, or weights that do not fit them.
    """
    from medsr.models.registry import build_network

    entry = checkpoint["model"]
    try:
        network = build_network(entry["name"], dict(entry["kwargs"]))
        network.load_state_dict(checkpoint.get("ema") or entry["state_dict"])
    except (MedsrError, RuntimeError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MedsrError(f"{source}: cannot rebuild its network ({reason})") from None
    return network


def weights_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names and tensor bytes (identifies the weights a run started from)."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous().reshape(-1)
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
