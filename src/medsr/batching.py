"""Batching images of mixed sizes: the indices of equally shaped images, in chunks."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence


def batches_by_shape(images: Sequence, batch_size: int) -> Iterator[list[int]]:
    """Indices of ``images`` (anything with ``.shape``) grouped by shape, in chunks of at most
    ``batch_size``; groups in order of first appearance, indices ascending within a group."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, image in enumerate(images):
        groups[tuple(image.shape)].append(index)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            yield indices[start : start + batch_size]
