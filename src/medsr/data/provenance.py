"""What a network was trained on, so that no number medsr prints scores it on its own patients.

Every checkpoint carries a ``trained_on`` record::

    {"version": 1, "dataset": "runs/demo/dataset", "fingerprint": "<sha256 of the manifest's
     ids, splits, patients and intensity mappings>", "patients": {"train": [...], "val": [...]},
     "counts": {"train": 3, "val": 1}, "fitted": ["train"] | ["train", "val"],
     "init_from": {..., "weights": "<sha256>"} | None, "teacher": {..., "weights": "<sha256>"} | None}

Patients are stored as salted SHA-256 hashes of their split keys (``patient:P1``), the salt being
the data set's fingerprint: enough to test membership against another data set's patients, without
patient ids in plain text inside a model file. (A short id can still be found by trying every
candidate; the hashes are not an anonymisation.) ``init_from`` holds the record of the checkpoint a
run started from (the SRGAN's SRResNet), ``teacher`` that of the checkpoint it distilled from, so
the patients they saw count too. ``fitted`` names the splits whose images were trained on (a final
model trained on train and val has no held-out selection split; records without it fitted train).

Torch-free.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from medsr.data.manifest import patient_of, read_manifest

VERSION = 1
#: The splits whose patients a trained network has seen: fitted to (train) or selected on (val).
SEEN_SPLITS = ("train", "val")
ROLES = {"train": "training", "val": "validation (model selection)"}


def dataset_fingerprint(rows: Sequence[Mapping[str, str]]) -> str:
    """SHA-256 over each manifest row's id, split, patient and intensity mapping (order-free).

    A data set re-prepared with another split, other slices or another intensity window gets
    another fingerprint; the same data set moved to another folder keeps it.
    """
    items = sorted(
        (
            row["id"],
            row["split"],
            patient_of(row),
            row["intensity_lo"],
            row["intensity_hi"],
            row["intensity_invert"],
        )
        for row in rows
    )
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def normalise_key(key: str) -> str:
    """A patient key compared without case or runs of white space (``patient:P 1`` == ``patient:p  1``)."""
    return " ".join(key.split()).casefold()


def hash_patient(key: str, salt: str) -> str:
    """Salted SHA-256 (hex, 32 characters) of one patient key (normalised) or source id."""
    return hashlib.sha256(f"{salt}\x00{normalise_key(key)}".encode()).hexdigest()[:32]


def _salted(values: Iterable[str], salt: str) -> list[str]:
    return sorted({hash_patient(v, salt) for v in values if v})


def training_record(
    dataset: str | Path,
    *,
    fitted: tuple[str, ...] = ("train",),
    init_from: Mapping | None = None,
    teacher: Mapping | None = None,
) -> dict:
    """The ``trained_on`` record of a run on ``dataset`` (see the module docstring).

    Args:
        dataset: a prepared data set folder.
        fitted: the splits whose images the run trains on (``DataConfig.train_splits``).
        init_from: the record of the checkpoint the run starts from (with its ``weights`` digest), or None.
        teacher: the record of the checkpoint the run distils from (``train.teacher``), or None.
    """
    rows = read_manifest(dataset)
    fingerprint = dataset_fingerprint(rows)
    members = {split: [r for r in rows if r["split"] == split] for split in SEEN_SPLITS}
    return {
        "version": VERSION,
        "dataset": str(dataset),
        "fingerprint": fingerprint,
        "patients": {split: _salted((patient_of(r) for r in m), fingerprint) for split, m in members.items()},
        "sources": {
            split: _salted((r.get("source_id", "") for r in m), fingerprint) for split, m in members.items()
        },
        "counts": {split: len({patient_of(r) for r in m}) for split, m in members.items()},
        "fitted": list(fitted),
        "init_from": dict(init_from) if init_from is not None else None,
        "teacher": dict(teacher) if teacher is not None else None,
    }


def valid_record(record: object) -> bool:
    """Whether ``record`` is a usable ``trained_on`` record (a checkpoint's may be missing or damaged)."""
    return (
        isinstance(record, Mapping)
        and isinstance(record.get("fingerprint"), str)
        and isinstance(record.get("patients"), Mapping)
    )


@dataclass(frozen=True)
class Overlap:
    """What of an evaluated split a model has seen. ``unknown``: the model has no usable record."""

    model: str
    split: str
    n_evaluated: int  # patients of the split
    seen: dict[str, str]  # patient key -> the split it was in when the model saw it (train / val)
    n_slices: int = 0  # slices of the split
    seen_slices: int = 0  # slices of the split whose source file the model saw (whatever its patient id then)
    unknown: bool = False

    def __bool__(self) -> bool:
        return self.unknown or bool(self.seen) or bool(self.seen_slices)

    def describe(self) -> str:
        """One line naming the model, what it saw, and (up to five of) the patients."""
        if self.unknown:
            return (
                f"{self.model}: its checkpoint does not record which patients it was trained on, so it cannot be "
                f"shown to be held out on the {self.split} split"
            )
        if not self.seen:
            return (
                f"{self.model} was trained or validated on the source files of {self.seen_slices} of the "
                f"{self.n_slices} slices of the {self.split} split (under other patient ids)"
            )
        names = ", ".join(k.split(":", 1)[-1] for k in sorted(self.seen)[:5]) + (
            ", ..." if len(self.seen) > 5 else ""
        )
        roles = " and ".join(ROLES[r] for r in SEEN_SPLITS if r in self.seen.values())
        return (
            f"{self.model} saw {len(self.seen)} of the {self.n_evaluated} patients of the {self.split} split "
            f"during training (in its {roles} split: {names})"
        )

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "split": self.split,
            "unknown": self.unknown,
            "n_evaluated": self.n_evaluated,
            "n_seen": len(self.seen),
            "patients": dict(sorted(self.seen.items())),
            "n_slices": self.n_slices,
            "seen_slices": self.seen_slices,
        }


def _records(record: Mapping) -> Iterable[Mapping]:
    """The record and, recursively, those of the checkpoints it started from or distilled from."""
    if record:
        yield record
        for parent in ("init_from", "teacher"):
            yield from _records(record.get(parent) or {})


def _seen(record: Mapping, values: Sequence[str], table: str) -> dict[str, str] | None:
    """Which of ``values`` (patient keys or source ids) the record's ``table`` holds, and in which
    split, over the ``init_from`` and ``teacher`` records; None when a level of the chain has no usable record."""
    seen: dict[str, str] = {}
    for level in _records(record):
        if not valid_record(level):  # started from a checkpoint without a record
            return None
        fitted = level.get("fitted") or ("train",)
        for split in SEEN_SPLITS:
            hashed = set((level.get(table) or {}).get(split, ()))
            for value in values:
                if value and value not in seen and hash_patient(value, level["fingerprint"]) in hashed:
                    seen[value] = (
                        "train" if split in fitted else split
                    )  # the role: trained on, or selected on
    return seen


def check_held_out(
    model: str, record: Mapping | None, rows: Sequence[Mapping[str, str]], split: str
) -> Overlap:
    """What a model with this ``trained_on`` record saw of the evaluated manifest ``rows`` of
    ``split``: their patients (by normalised key) and their source files (by id, so a data set of the
    same files prepared with another patient rule is caught too). Methods that learnt from no data
    have an empty record (``{}``) and see nothing."""
    keys = sorted({patient_of(r) for r in rows})
    if isinstance(record, Mapping) and not record:
        return Overlap(model, split, len(keys), {}, len(rows))
    if not valid_record(record):
        return Overlap(model, split, len(keys), {}, len(rows), unknown=True)
    patients = _seen(record, keys, "patients")
    sources = _seen(record, sorted({r.get("source_id", "") for r in rows}), "sources")
    if patients is None or sources is None:
        return Overlap(model, split, len(keys), {}, len(rows), unknown=True)
    seen_slices = sum(1 for r in rows if r.get("source_id", "") in sources)
    return Overlap(model, split, len(keys), patients, len(rows), seen_slices)
