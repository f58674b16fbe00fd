"""Which process of a ``medsr enhance`` run does which job, and which jobs are already done.

Sharding: ``torchrun --nproc-per-node N -m medsr enhance TREE -o OUT`` starts N processes. The
first one lists the jobs (one DICOM series, or one other file) and sends that plan to the others
(``agree``: one broadcast over a gloo process group, the only collective call), so every process
works from the same list even while files are still arriving; each takes the jobs that ``assign``
gives its rank: whole jobs, balanced by input bytes, largest first, deterministic. After the
broadcast no process waits for another, so one failing never stalls the rest.

Resuming: when every output of a job is written, a marker ``OUT/.medsr-enhance/<key>.json``, named
after the job's output files, records its inputs and outputs (resolved path, size, modification
time) and the model that wrote them (``model_identity``: name, version, the SHA-256 of the weights
it loaded, precision and tile size). A later run skips a job whose marker matches all of that; any
other job is done again. The marker is removed before a job starts and written after its outputs
(atomically), so an interrupted or failed job never leaves a marker, and outputs rewritten from
another input or by another model are never mistaken for finished ones.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medsr.fsutil import atomic_write_json

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


def coordinated(shard: Shard) -> bool:
    """Whether the processes can talk: several of them, started by torchrun (which sets
    MASTER_ADDR for the rendezvous). Otherwise (RANK and WORLD_SIZE set by hand) each lists the
    jobs itself."""
    return shard.world > 1 and "MASTER_ADDR" in os.environ


def agree(plan: object, shard: Shard) -> object:
    """The first process's ``plan`` (picklable), in every process of the run (a broadcast over
    gloo, set up from torchrun's environment); ``plan`` itself when not ``coordinated``."""
    if not coordinated(shard):
        return plan
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    box = [plan if shard.rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def model_identity(model, tile: int) -> dict[str, str]:
    """What identifies the outputs a model writes: its label (name and version), the SHA-256 of the
    weights it loaded (``SRModel.weights_sha256``; empty for interpolation), scale, precision and
    tile size."""
    return {
        "model": model.label,
        "weights_sha256": model.weights_sha256,
        "scale": str(model.scale),
        "precision": str(getattr(model, "precision", "fp32")),
        "tile": str(tile),
    }


def _stat(path: Path) -> list:
    """[resolved path, size, modification time in ns] of a file, or the path alone when it is gone."""
    resolved = path.resolve()
    try:
        info = resolved.stat()
    except OSError:
        return [str(resolved)]
    return [str(resolved), info.st_size, info.st_mtime_ns]


def _marker(state: Path, targets: Sequence[Path]) -> Path:
    names = "\n".join(sorted(str(t.resolve()) for t in targets))
    return state / f"{hashlib.sha256(names.encode()).hexdigest()[:32]}.json"


def _record(sources: Sequence[Path], targets: Sequence[Path], identity: dict[str, str]) -> dict:
    return {
        "sources": sorted(_stat(p) for p in sources),
        "targets": sorted(_stat(p) for p in targets),
        "identity": identity,
    }


def is_done(
    state: Path | None, sources: Sequence[Path], targets: Sequence[Path], identity: dict[str, str]
) -> bool:
    """Whether a job finished with this model from these very inputs, and its outputs are untouched."""
    if state is None:
        return False
    try:
        saved = json.loads(_marker(state, targets).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return saved == _record(sources, targets, identity)


def forget(state: Path | None, targets: Sequence[Path]) -> None:
    """Remove the marker of the job writing ``targets`` (before it starts)."""
    if state is not None:
        _marker(state, targets).unlink(missing_ok=True)


def mark_done(
    state: Path | None, sources: Sequence[Path], targets: Sequence[Path], identity: dict[str, str]
) -> None:
    """Record that a job wrote ``targets`` from ``sources`` with this model (after the outputs)."""
    if state is not None:
        atomic_write_json(_marker(state, targets), _record(sources, targets, identity))


def release(shard: Shard) -> None:
    """Leave the process group ``agree`` joined (at the end of a coordinated run)."""
    if coordinated(shard):
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
