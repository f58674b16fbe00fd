"""Which process of a ``medsr enhance`` run does which job, and which jobs are already done.

Sharding: ``torchrun --nproc-per-node N -m medsr enhance TREE -o OUT`` starts N processes that
each see the same sorted list of jobs (one DICOM series, or one other file) and take those that
``assign`` gives their rank: whole jobs, balanced by input bytes, largest first, deterministic. No
process waits for another, so nothing hangs when one fails.

Resuming: when every output of a job is written, a marker ``OUT/.medsr-enhance/<key>.json`` records
the job's source, its outputs and the model that wrote them (name, version, source and the SHA-256
of its weights file). A later run with the same model skips a job whose marker matches and whose
outputs all exist; any other job is done again, so an interrupted run continues where it stopped and
a run with another model never keeps the first model's outputs. Markers are written after the
outputs (atomically), so a kill never leaves a marker for a partial job.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from medsr.fsutil import atomic_write_json, sha256_file

STATE_DIR = ".medsr-enhance"


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes of one run (``torchrun`` sets RANK and WORLD_SIZE)."""

    rank: int = 0
    world: int = 1

    @classmethod
    def from_environment(cls) -> Shard:
        rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        if not 0 <= rank < world:
            raise ValueError(f"RANK {rank} is not below WORLD_SIZE {world}")
        return cls(rank, world)


def assign(weights: Sequence[int], world: int) -> list[int]:
    """The rank of each job: largest first to the least-loaded rank (ties to the lower rank).

    Args:
        weights: one non-negative size per job (input bytes), in the run's job order.
        world: number of processes.
    """
    ranks = [0] * len(weights)
    loads = [(0, rank) for rank in range(world)]
    for index in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        load, rank = heapq.heappop(loads)
        ranks[index] = rank
        heapq.heappush(loads, (load + weights[index], rank))
    return ranks


@lru_cache(maxsize=8)
def _file_digest(path: str) -> str:
    return sha256_file(path)


def model_identity(model) -> dict[str, str]:
    """What identifies the weights that wrote a job's outputs: label, source and, where the source
    is a file (a checkpoint, export or built-in weights file), its SHA-256."""
    source = str(getattr(model, "source", "") or "")
    path = model.weights_path or source
    digest = _file_digest(str(Path(path).resolve())) if path and Path(path).is_file() else ""
    return {"model": model.label, "source": source, "sha256": digest, "scale": str(model.scale)}


def _marker(state: Path, key: str) -> Path:
    return state / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def is_done(state: Path | None, key: str, targets: Sequence[Path], identity: dict[str, str]) -> bool:
    """Whether the job ``key`` finished with this model: its marker matches and its outputs exist."""
    if state is None:
        return False
    try:
        record = json.loads(_marker(state, key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        record.get("key") == key
        and record.get("identity") == identity
        and record.get("targets") == sorted(map(str, targets))
        and all(Path(t).is_file() for t in targets)
    )


def mark_done(state: Path | None, key: str, targets: Sequence[Path], identity: dict[str, str]) -> None:
    """Record that job ``key`` wrote ``targets`` with this model (after the outputs are written)."""
    if state is not None:
        atomic_write_json(
            _marker(state, key), {"key": key, "targets": sorted(map(str, targets)), "identity": identity}
        )
