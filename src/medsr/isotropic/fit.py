"""Self-supervised training pairs from a volume's own in-plane slices, and the per-volume fine-tuning.

The in-plane slices are already fine. Degrading one in-plane axis with the acquisition's slice
profile at the volume's through-plane factor (``profile.slices_at``, whole or fractional) gives
(thick, fine) pairs that show the network exactly the blur and sampling it must undo along the
slice axis (SMORE, Zhao et al. 2020). Both in-plane axes serve as the degraded one (the slice is
transposed), and patches are flipped at random (the profile is symmetric; a patch flipped along
its rows is cut again from the reversed rows, so that its slices start at its first fine row
also when a fractional factor leaves part of a slice over). Each patch's thick rows are made from
the fine rows under them (the profile's tails reach beyond the patch), the first slice starting
on the patch's first fine row, as at reconstruction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from medsr.isotropic.profile import Profile, fine_count, slice_count, slices_at


@dataclass(frozen=True)
class FitSettings:
    seconds: float = 300.0  # training time budget
    max_iterations: int | None = None  # stop earlier (tests)
    batch: int = 8
    rows: int = 24  # thick rows per patch (the fine patch has fine_count(rows, factor))
    columns: int = 96
    learning_rate: float = 2e-4
    precision: str = "bf16"  # autocast dtype on the CPU; fp32 where bf16 is not supported
    seed: int = 0


@dataclass
class FitRecord:
    iterations: int
    seconds: float
    first_loss: float  # mean L1 over the first 20 iterations
    last_loss: float  # over the last 20


class PairSampler:
    """Random (thick, fine) patch pairs from the in-plane slices of a volume (Z, Y, X) on [0, 1],
    ``factor`` fine voxels per slice spacing (a whole number or not), the slice profile of
    ``thickness`` fine voxels."""

    def __init__(
        self, volume: np.ndarray, factor: float, thickness: float, profile: Profile, settings: FitSettings
    ) -> None:
        self.factor, self.thickness, self.profile, self.settings = factor, thickness, profile, settings
        self.rng = np.random.default_rng(settings.seed)
        spread = volume.reshape(volume.shape[0], -1).std(1)
        keep = [z for z in range(volume.shape[0]) if spread[z] > 0.25 * spread.max()] or [0]
        self.slices = [  # fine slices with tissue, in both orientations: the degraded axis first
            np.ascontiguousarray(fine, np.float32) for z in keep for fine in (volume[z], volume[z].T)
        ]
        smallest = min(min(slice_count(f.shape[0], factor), f.shape[1]) for f in self.slices)
        self.rows = min(settings.rows, smallest)
        self.fine_rows = fine_count(self.rows, factor)
        # a fractional factor leaves part of a slice beyond the patch's last fine row: read backwards,
        # a patch needs that many fine rows before it (else the slice would reach past the array)
        self.overhang = math.ceil(self.rows * factor - self.fine_rows - 1e-6)
        self.columns = min(settings.columns, min(f.shape[1] for f in self.slices))

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(thick (B, 1, rows, columns), fine (B, 1, fine_count(rows, factor), columns)) float32."""
        thick_out, fine_out = [], []
        for _ in range(self.settings.batch):
            thick, fine = self._patch()
            thick_out.append(thick)
            fine_out.append(fine)
        return (torch.from_numpy(np.stack(a)[:, None]) for a in (thick_out, fine_out))  # type: ignore[return-value]

    def _patch(self) -> tuple[np.ndarray, np.ndarray]:
        """A patch with tissue (the best of four draws by spread), flipped at random."""
        best = None
        for _ in range(4):
            fine = self.slices[self.rng.integers(len(self.slices))]
            a = self.rng.integers(slice_count(fine.shape[0], self.factor) - self.rows + 1)
            b = self.rng.integers(fine.shape[1] - self.columns + 1)
            columns = fine[:, b : b + self.columns]
            start = int(np.floor(a * self.factor + 1e-6))  # the patch starts on a fine voxel
            pair = self._cut(columns, start)
            if best is None or pair[0].std() > best[0][0].std():
                best = (pair, columns, start)
            if best[0][0].std() > 0.05:
                break
        (t, f), columns, start = best
        if self.rng.random() < 0.5 and start >= self.overhang:  # the same fine rows read backwards,
            t, f = self._cut(columns[::-1], columns.shape[0] - start - self.fine_rows)  # slices from that end
        if self.rng.random() < 0.5:
            t, f = t[:, ::-1], f[:, ::-1]
        return np.ascontiguousarray(t), np.ascontiguousarray(f)

    def _cut(self, columns: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
        """(thick rows, fine rows) of the patch whose first fine row is ``start``: thick row ``i``
        centred at fine row ``start + i * factor + (factor - 1) / 2``."""
        centres = start + np.arange(self.rows) * self.factor + (self.factor - 1) / 2
        thick = slices_at(columns, 0, centres, self.thickness, self.profile)
        return thick, columns[start : start + self.fine_rows]


def fine_tune(
    network: torch.nn.Module,
    sampler: PairSampler,
    settings: FitSettings,
    device: torch.device,
    on_step: Callable[[int, float], None] | None = None,
) -> FitRecord:
    """Adam on the L1 loss for ``settings.seconds`` (or ``max_iterations``), the learning rate
    following a cosine from ``learning_rate`` to 0 over the budget (by time, or by iterations when
    only those bound it). ``on_step(iteration, elapsed seconds)`` after each step."""
    torch.manual_seed(settings.seed)
    network.to(device, memory_format=torch.channels_last).train()  # faster convolutions, CPU and GPU
    optimiser = torch.optim.Adam(network.parameters(), lr=settings.learning_rate)
    autocast = settings.precision == "bf16"
    losses: list[float] = []
    began = time.perf_counter()
    iteration = 0
    while True:
        elapsed = time.perf_counter() - began
        done = elapsed / settings.seconds
        if settings.max_iterations is not None:
            done = max(done, iteration / settings.max_iterations if settings.max_iterations else 1.0)
        if done >= 1:
            break
        for group in optimiser.param_groups:
            group["lr"] = settings.learning_rate * 0.5 * (1 + math.cos(math.pi * done))
        thick, fine = (t.to(device, memory_format=torch.channels_last) for t in sampler.batch())
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = network(thick)
        loss = F.l1_loss(out.float(), fine)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
        iteration += 1
        if on_step:
            on_step(iteration, time.perf_counter() - began)
    network.eval()
    return FitRecord(
        iterations=iteration,
        seconds=time.perf_counter() - began,
        first_loss=float(np.mean(losses[:20])) if losses else float("nan"),
        last_loss=float(np.mean(losses[-20:])) if losses else float("nan"),
    )
