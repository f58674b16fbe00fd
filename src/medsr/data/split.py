"""Patient-level train/validation/test split: no patient ever appears in two splits.

Slices are grouped by patient id (falling back to the series, then the source file, when a
file carries no patient id), and whole patients are dealt to splits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medsr.choices import SPLIT_NAMES
from medsr.errors import MedsrError

UNUSED = "unused"


@dataclass(frozen=True)
class SplitSpec:
    """Either image counts per split (``counts``) or fractions of all images (``fractions``)."""

    counts: tuple[int, int, int] | None = None
    fractions: tuple[float, float, float] | None = None

    @classmethod
    def parse(cls, text: str) -> "SplitSpec":
        """``"1000,200,200"`` (counts) or ``"0.7,0.15,0.15"`` (fractions, summing to 1)."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3:
            raise ValueError(f"split needs three values train,val,test; got {text!r}")
        try:
            if all(p.isdigit() for p in parts):
                counts = tuple(int(p) for p in parts)
                if sum(counts) == 0:
                    raise ValueError
                return cls(counts=counts)  # type: ignore[arg-type]
            fractions = tuple(float(p) for p in parts)
        except ValueError:
            raise ValueError(
                f"split values must be counts (1000,200,200) or fractions (0.7,0.15,0.15); got {text!r}"
            ) from None
        if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must be >= 0 and sum to 1; got {text!r}")
        return cls(fractions=fractions)  # type: ignore[arg-type]

    def __str__(self) -> str:
        values = self.counts if self.counts is not None else self.fractions
        return ",".join(f"{v:g}" for v in values or ())


def group_key(patient_id: str, series_uid: str, source: str) -> str:
    """The unit of splitting for one slice: patient, else series, else file."""
    if patient_id.strip():
        return f"patient:{patient_id.strip()}"
    if series_uid.strip():
        return f"series:{series_uid.strip()}"
    return f"file:{source}"


def assign_splits(
    groups: Sequence[str], spec: SplitSpec, *, seed: int = 0, strata: Sequence[str] | None = None
) -> list[str]:
    """Split name (``train``/``val``/``test``/``unused``) for each slice.

    Args:
        groups: the group key of each slice (see ``group_key``).
        spec: counts (exact image numbers; the last patient of a split may be used in part, the
            rest of that patient's slices become ``unused`` rather than move to another split)
            or fractions (every slice is used; patients are dealt to the split furthest below
            its target).
        seed: patients are visited in a seeded random order.
        strata: optional label per slice (e.g. modality); with fractions, the patients of each
            stratum (by the label most of their slices carry) are dealt separately, so that every
            split gets its share of each modality.

    Raises:
        MedsrError: counts ask for more images than there are.
    """
    members: dict[str, list[int]] = defaultdict(list)
    for index, key in enumerate(groups):
        members[key].append(index)
    rng = np.random.default_rng(seed)
    order = sorted(members)
    rng.shuffle(
        order
    )  # the patients' visiting order (with counts); it also advances rng for the fractions' deals
    if spec.counts is not None:
        return _assign_counts(members, order, len(groups), spec, rng)
    return _assign_fractions(members, len(groups), spec, rng, strata)


def _assign_counts(
    members: dict[str, list[int]], order: Sequence[str], total: int, spec: SplitSpec, rng: np.random.Generator
) -> list[str]:
    """Deal whole patients, in ``order``, to the split that needs the most images, taking part of
    the last patient of a split when it has more slices than the split still needs."""
    assert spec.counts is not None
    result = [UNUSED] * total
    need = dict(zip(SPLIT_NAMES, spec.counts))
    if sum(need.values()) > total:
        raise MedsrError(
            f"split {spec} asks for {sum(need.values())} images but only {total} passed the filters; "
            "lower the counts or give fractions such as 0.7,0.15,0.15"
        )
    for key in order:
        name = max(SPLIT_NAMES, key=lambda n: need[n])
        if need[name] == 0:
            break
        indices = members[key]
        if len(indices) > need[name]:
            indices = sorted(rng.choice(indices, size=need[name], replace=False).tolist())
        for index in indices:
            result[index] = name
        need[name] -= len(indices)
    if any(need.values()):
        placed = ",".join(str(c - need[n]) for n, c in zip(SPLIT_NAMES, spec.counts))
        raise MedsrError(
            f"split {spec} could place only {placed} images without sharing a patient between splits; "
            "lower the counts or give fractions"
        )
    return result


def _assign_fractions(
    members: dict[str, list[int]],
    total: int,
    spec: SplitSpec,
    rng: np.random.Generator,
    strata: Sequence[str] | None,
) -> list[str]:
    """Deal every patient by fractions, each stratum (a patient's majority label) separately."""
    assert spec.fractions is not None
    if strata is None:
        parts = [members]
    else:
        label_of = {}
        for key, indices in members.items():
            labels = [strata[i] for i in indices]
            label_of[key] = max(sorted(set(labels)), key=labels.count)
        parts = [
            {k: v for k, v in members.items() if label_of[k] == label}
            for label in sorted(set(label_of.values()))
        ]
    result = [UNUSED] * total
    for part in parts:
        for key, name in _deal_fractions(part, spec.fractions, rng).items():
            for index in part[key]:
                result[index] = name
    return result


def _deal_fractions(
    members: dict[str, list[int]], fractions: Sequence[float], rng: np.random.Generator, tries: int = 200
) -> dict[str, str]:
    """Split name per group: the best of ``tries`` seeded random deals. In each, groups in random
    order go to the split furthest below its image target; the deal closest to the targets wins,
    and a deal that leaves a split with a non-zero fraction empty loses to any that does not
    (when there are enough groups)."""
    keys = sorted(members)
    sizes = np.array([len(members[k]) for k in keys], dtype=float)
    total = float(sizes.sum())
    targets = np.asarray(fractions, dtype=float) * total
    active = np.flatnonzero(targets > 0)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(tries):
        order = rng.permutation(len(keys))
        have = np.zeros(len(SPLIT_NAMES))
        choice = np.empty(len(keys), dtype=int)
        for index in order:
            name = active[np.argmax(targets[active] - have[active])]
            choice[index] = name
            have[name] += sizes[index]
        empty = int(np.sum(have[active] == 0)) if len(keys) >= len(active) else 0
        cost = empty * total**2 + float(np.sum((have - targets) ** 2))
        if best is None or cost < best[0]:
            best = (cost, choice)
    assert best is not None
    return {key: SPLIT_NAMES[name] for key, name in zip(keys, best[1])}
