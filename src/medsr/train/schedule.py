"""How long a run trains and its learning rate at each step.

A run ends at the first of the limits it is given: ``train.time_budget`` (seconds of training,
validation and checkpoints not counted), ``train.iterations`` (optimiser steps, as BasicSR counts),
or, when neither is given, ``train.epochs``. The learning-rate schedule spans that length: its
progress is the fraction of the budget spent (the larger fraction when both a budget and an
iteration count are given), so a cosine decays to ``train.min_lr`` exactly when the budget runs out.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

import torch

from medsr.train import distributed

_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?")


def parse_duration(text: str | float | int) -> float:
    """``"20m"``, ``"180s"``, ``"1h30m"``, ``"90"`` or a number (seconds) -> seconds (> 0); every
    part of a compound duration needs its unit (``1h30`` is refused).

    Raises:
        ValueError: not a duration, or not positive.
    """
    compact = str(text).replace(" ", "")
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif re.fullmatch(_NUMBER, compact):
        seconds = float(compact)
    else:
        match = _DURATION.fullmatch(compact)
        if not match or not any(match.groups()):
            raise ValueError(f"expected a duration such as 20m, 180s or 1h30m, got {text!r}")
        hours, minutes, secs = (float(g) if g else 0.0 for g in match.groups())
        seconds = 3600 * hours + 60 * minutes + secs
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"a duration must be positive, got {text!r}")
    return seconds


def lr_factor(schedule: str, progress: float, warmup: float, min_ratio: float) -> float:
    """The learning rate as a fraction of ``train.lr`` at ``progress`` in [0, 1] of the run.

    ``warmup``: the first fraction of the run, over which the rate rises linearly from 0;
    ``constant``: 1 after it; ``cosine``: from 1 down to ``min_ratio`` (``min_lr / lr``) at the end.
    """
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    if schedule == "constant":
        return 1.0
    span = (progress - warmup) / (1.0 - warmup) if warmup < 1 else 1.0
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(max(span, 0.0), 1.0)))
    return min_ratio + (1.0 - min_ratio) * cosine


@dataclass
class Clock:
    """The run's iterations and training seconds so far, against its limits.

    Every process of a distributed run sees the same numbers: the seconds are the maximum over
    processes, taken every ``sync_every`` iterations (every iteration in one process), so all
    processes use the same learning rate and stop at the same iteration.
    """

    timer = staticmethod(time.perf_counter)  # seconds (tests replace it)

    iterations_per_epoch: int
    epochs: int
    iterations: int | None = None  # limit
    seconds: float | None = None  # limit
    done: int = 0  # iterations run
    spent: float = 0.0  # training seconds spent (as of the last sync)
    sync_every: int = 16  # iterations between readings of the seconds (when world > 1 or on a GPU)
    world: int = 1
    device: torch.device | None = None

    def __post_init__(self) -> None:
        self._started: float | None = None
        self._base = self.spent

    def progress(self) -> float:
        """The fraction of the run done, in [0, 1]."""
        fractions = []
        if self.seconds is not None:
            fractions.append(self.spent / self.seconds)
        if self.iterations is not None:
            fractions.append(self.done / self.iterations)
        if not fractions:
            fractions.append(self.done / (self.epochs * self.iterations_per_epoch))
        return min(max(fractions), 1.0)

    def finished(self) -> bool:
        """Whether a limit is reached (no further iteration should run)."""
        if self.seconds is not None or self.iterations is not None:
            return (self.seconds is not None and self.spent >= self.seconds) or (
                self.iterations is not None and self.done >= self.iterations
            )
        return self.done >= self.epochs * self.iterations_per_epoch

    def start(self) -> None:
        """Start (or restart, after validation) counting training seconds."""
        self._base, self._started = self.spent, self.timer()

    def tick(self) -> None:
        """Count one iteration; refresh the seconds every iteration on one CPU process, else every
        ``sync_every`` iterations (a reading waits for the GPU's queued work, and with several
        processes is shared among them)."""
        self.done += 1
        device = self.device or torch.device("cpu")
        if (self.world == 1 and device.type == "cpu") or self.done % self.sync_every == 0:
            self.sync()

    def sync(self) -> None:
        """Read the seconds spent now (after the GPU's queued work; the maximum over processes).
        Every process must call it at the same iteration (the loop calls it at each epoch's end)."""
        device = self.device or torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        now = self.timer()
        elapsed = self._base + now - (now if self._started is None else self._started)
        self.spent = distributed.all_reduce_max(elapsed, self.world, device)

    def state(self) -> dict:
        """What a checkpoint keeps to resume the clock."""
        return {"iterations": self.done, "seconds": self.spent}


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every parameter group's learning rate (in place for a tensor rate, which a CUDA graph
    captured with ``capturable=True`` reads)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr
