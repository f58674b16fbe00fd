"""Training data on the training device: HR images in memory, random patches, LR made on the fly.

Every image of the train split is kept once as uint16 in one padded tensor on the device. Each
epoch visits the images in a seeded random order (``patches_per_image`` times each); a batch is
one gather of random ``patch_size`` crops, random flips/90-degree rotations per patch, and the
degradation (``medsr.data.degrade``) applied to the batch. The random stream of an epoch depends
only on (seed, epoch, rank), so a resumed run draws exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from medsr.data.degrade import Degradation, crop_to_scale, degrade, degrade_image, image_seed
from medsr.data.manifest import read_manifest
from medsr.errors import MedsrError
from medsr.io.raster import PNG16_MAX, read_png16


def _read_uint16(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint16 or image.ndim != 2:
        raise MedsrError(f"{path}: not a 16-bit grayscale slice of a medsr data set")
    return image


class PatchSampler:
    """Random HR/LR patch batches from the train split (and the ``splits`` given).

    Args:
        dataset: data set folder; images smaller than ``patch_size`` are left out.
        patch_size, batch_size, patches_per_image, augment: see ``DataConfig``.
        degradation: HR -> LR protocol (its scale is the model's).
        device: where the images live and batches are made.
        splits: the manifest splits whose images are drawn from (``DataConfig.train_splits``).
    """

    def __init__(
        self,
        dataset: str | Path,
        *,
        patch_size: int,
        batch_size: int,
        patches_per_image: int,
        augment: bool,
        degradation: Degradation,
        device: torch.device,
        splits: Sequence[str] = ("train",),
    ) -> None:
        rows = [r for r in read_manifest(dataset) if r["split"] in splits]
        images = [_read_uint16(Path(dataset) / r["file"]) for r in rows]
        images = [im for im in images if min(im.shape) >= patch_size]
        if not images:
            raise MedsrError(f"{dataset}: no training slice of at least {patch_size}x{patch_size}")
        height = max(im.shape[0] for im in images)
        width = max(im.shape[1] for im in images)
        stack = np.zeros(
            (len(images), height, width), dtype=np.int32
        )  # int32: torch lacks uint16 gathers everywhere
        for index, image in enumerate(images):
            stack[index, : image.shape[0], : image.shape[1]] = image
        self.images = torch.from_numpy(stack).to(device)
        self.sizes = torch.tensor([im.shape for im in images], device=device)
        self.patch_size, self.batch_size = patch_size, batch_size
        self.patches_per_image, self.augment = patches_per_image, augment
        self.degradation, self.device = degradation, device
        self.offsets = torch.arange(patch_size, device=device)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def iterations(self, world: int = 1) -> int:
        """Iterations per epoch for each of ``world`` processes (at least one)."""
        return max(1, (len(self) * self.patches_per_image) // (self.batch_size * world))

    def _generator(self, seed: int, epoch: int, rank: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(image_seed(seed, f"epoch{epoch}/rank{rank}"))

    def batches(
        self, epoch: int, seed: int, rank: int = 0, world: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``iterations(world)`` pairs (lq (B, 1, p/s, p/s), hr (B, 1, p, p)) in [0, 1]."""
        generator = self._generator(seed, epoch, rank)
        steps = self.iterations(world)
        need = steps * self.batch_size * world
        order = torch.cat(
            [
                torch.randperm(len(self), generator=generator, device=self.device)
                for _ in range(-(-need // len(self)))
            ]
        )[:need]
        mine = order.view(steps, world, self.batch_size)[:, rank]
        p = self.patch_size
        for indices in mine:
            sizes = self.sizes[indices]
            top = (
                torch.rand(len(indices), generator=generator, device=self.device) * (sizes[:, 0] - p + 1)
            ).long()
            left = (
                torch.rand(len(indices), generator=generator, device=self.device) * (sizes[:, 1] - p + 1)
            ).long()
            rows = (top[:, None] + self.offsets)[:, :, None]
            cols = (left[:, None] + self.offsets)[:, None, :]
            hr = self.images[indices[:, None, None], rows, cols].float().div_(PNG16_MAX).unsqueeze(1)
            if self.augment:
                flips = torch.rand(3, len(indices), generator=generator, device=self.device) < 0.5
                hr = torch.where(flips[0].view(-1, 1, 1, 1), hr.flip(-1), hr)
                hr = torch.where(flips[1].view(-1, 1, 1, 1), hr.flip(-2), hr)
                hr = torch.where(flips[2].view(-1, 1, 1, 1), hr.transpose(-1, -2), hr)
            lq = degrade(hr, self.degradation, generator=generator)
            yield lq, hr


@dataclass
class ScoringSet:
    """Whole images scored every epoch: ids, HR crops and their (fixed) LR images."""

    ids: list[str]
    hr: list[np.ndarray]
    lq: list[np.ndarray]


def scoring_set(
    dataset: str | Path, split: str, degradation: Degradation, seed: int, limit: int | None
) -> ScoringSet:
    """The first ``limit`` images of a split with LR images made exactly as ``medsr evaluate`` makes them."""
    rows = read_manifest(dataset, split=split)[:limit]
    ids, hrs, lqs = [], [], []
    for row in rows:
        hr = crop_to_scale(read_png16(Path(dataset) / row["file"]), degradation.scale)
        if min(hr.shape) < 11 * degradation.scale:
            continue  # too small for an 11x11 SSIM window after the round trip
        ids.append(row["id"])
        hrs.append(hr)
        lqs.append(degrade_image(hr, degradation, seed=seed, key=row["id"]))
    return ScoringSet(ids, hrs, lqs)
