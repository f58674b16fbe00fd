"""When a run may be resumed, and from which checkpoint.

A run is resumed only when it is really the same run: the same config except for the settings in
``HARMLESS`` (more epochs, another device, threads, compilation), the same data set (by its
fingerprint, so a moved folder is fine, a re-prepared one is not), and the same starting weights
(``train.init_from``, by digest). Anything else gives a one-line reason naming what differs.

``best.pt`` is written before ``last.pt`` at the end of an epoch, and a resume starts from the
later of the two (both are complete checkpoints), so a kill between the two writes never leaves
``best.pt`` holding other weights than the best epoch the run's history names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from medsr import layout
from medsr.fsutil import atomic_write_bytes
from medsr.models.checkpoint import read_checkpoint

#: Config keys that may differ between a run and its resumption (they do not change what is learnt).
#: (Not ``train.cuda_graph``: the captured step's optimiser keeps its rate in a tensor on the GPU.
#: The run's length: ``config_changes``.)
HARMLESS = frozenset(
    {
        "name",
        "run_dir",
        "data.dataset",
        "train.device",
        "train.threads",
        "train.compile",
        "train.channels_last",
    }
)
BEST, LAST = layout.BEST_CHECKPOINT, layout.LAST_CHECKPOINT


def flatten(data: Mapping, prefix: str = "") -> dict[str, object]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: Mapping, wanted: Mapping, defaults: Mapping | None = None) -> list[str]:
    """The non-harmless settings that differ, as ``key: <saved> in the run, <wanted> now``.

    ``defaults``: a setting the run's config lacks (written before the setting existed) counts as
    its default there. The run's length (``train.epochs``, ``train.iterations``,
    ``train.time_budget``) may change under a constant learning rate; under a schedule, which spans
    the run's length, only ``train.epochs`` of a run that ``train.iterations`` or
    ``train.time_budget`` ends (where epochs do not count).
    """
    old, new = {**flatten(defaults or {}), **flatten(saved)}, flatten(wanted)
    keys = sorted((set(old) | set(new)) - HARMLESS - _harmless_length(old, new))
    return [
        f"{key}: {old.get(key)!r} in the run, {new.get(key)!r} now"
        for key in keys
        if old.get(key) != new.get(key)
    ]


def _harmless_length(old: Mapping, new: Mapping) -> set[str]:
    """The run-length settings that may change on a resume (see ``config_changes``)."""
    length = {"train.epochs", "train.iterations", "train.time_budget"}
    if old.get("train.schedule", "constant") == new.get("train.schedule", "constant") == "constant":
        return length
    limited = [
        any(d.get(k) is not None for k in ("train.iterations", "train.time_budget")) for d in (old, new)
    ]
    return {"train.epochs"} if all(limited) else set()


def starting_weights(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The generator weights a run initialised from ``checkpoint`` starts with (its EMA if any)."""
    return checkpoint.get("ema") or checkpoint["model"]["state_dict"]


def resume_problem(checkpoint: Mapping, config: Mapping, record: Mapping) -> str | None:
    """Why ``checkpoint`` cannot be continued as the run of ``config`` on the data of ``record``
    (the ``trained_on`` record the run would have now), or None when it can."""
    from medsr.train.config import ExperimentConfig

    defaults = {
        k: v for k, v in ExperimentConfig().to_dict().items() if k != "model"
    }  # model: per architecture
    changes = config_changes(checkpoint.get("config", {}), config, defaults)
    if changes:
        return changes[0] + (f" (and {len(changes) - 1} more)" if len(changes) > 1 else "")
    saved = checkpoint.get("trained_on")
    if not saved:
        return "the checkpoint does not record which data set it was trained on"
    if saved["fingerprint"] != record["fingerprint"]:
        return f"data.dataset: {record['dataset']} is not the data set the run was trained on (other slices, splits or intensities)"
    for key in ("init_from", "teacher"):
        old, new = saved.get(key) or {}, record.get(key) or {}
        if old.get("weights") != new.get("weights"):
            return f"train.{key}: the checkpoint changed since the run began"
    return None


def latest_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict] | None:
    """The later (by epoch) of ``best.pt`` and ``last.pt`` in ``run_dir`` and its contents; None when
    neither exists."""
    found = [
        (run_dir / name, read_checkpoint(run_dir / name, map_location))
        for name in (LAST, BEST)
        if (run_dir / name).is_file()
    ]
    return max(found, key=lambda item: item[1]["epoch"]) if found else None


def missing_best(run_dir: Path, checkpoint: Mapping) -> str | None:
    """Why the run's ``best.pt`` cannot be trusted or restored from ``checkpoint`` (the later of the
    two files), or None: a missing ``best.pt`` is restorable only when the best epoch is the last."""
    if (run_dir / BEST).is_file() or checkpoint["best"].get("epoch") == checkpoint["epoch"]:
        return None
    return (
        f"{run_dir / BEST} is missing and its weights (epoch {checkpoint['best'].get('epoch')}) "
        "are in no other file"
    )


def repair_pair(run_dir: Path, source: Path, checkpoint: Mapping) -> None:
    """Make ``last.pt`` and ``best.pt`` agree with ``source``, the later checkpoint: ``last.pt`` when a
    kill left ``best.pt`` one epoch ahead, ``best.pt`` when it is missing and ``source`` is the best."""
    if source.name != LAST:
        atomic_write_bytes(run_dir / LAST, source.read_bytes())
    if not (run_dir / BEST).is_file() and checkpoint["best"].get("epoch") == checkpoint["epoch"]:
        atomic_write_bytes(run_dir / BEST, source.read_bytes())
