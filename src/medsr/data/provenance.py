"""What a network was trained on, so that no number medsr prints scores it on its own patients.

Every checkpoint carries a ``trained_on`` record::

    {"version": 1, "dataset": "runs/demo/dataset", "fingerprint": "<sha256 of the manifest's
     ids, splits, patients and intensity mappings>", "patients": {"train": [...], "val": [...]},
     "counts": {"train": 3, "val": 1}, "init_from": {..., "weights": "<sha256>"} | None}

Patients are stored as salted SHA-256 hashes of their split keys (``patient:P1``), the salt being
the data set's fingerprint: enough to test membership against another data set's patients, without
patient ids in plain text inside a model file. (A short id can still be found by trying every
candidate; the hashes are not an anonymisation.) ``init_from`` holds the record of the checkpoint a
run started from (the SRGAN's SRResNet), so the patients it saw count too.

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
        (row["id"], row["split"], patient_of(row), row["intensity_lo"], row["intensity_hi"], row["intensity_invert"])
        for row in rows
    )
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def hash_patient(key: str, salt: str) -> str:
    """Salted SHA-256 (hex, 32 characters) of one patient key."""
    return hashlib.sha256(f"{salt}\x00{key}".encode()).hexdigest()[:32]


def training_record(dataset: str | Path, *, init_from: Mapping | None = None) -> dict:
    """The ``trained_on`` record of a run on ``dataset`` (see the module docstring).

    Args:
        dataset: a prepared data set folder.
        init_from: the record of the checkpoint the run starts from (with its ``weights`` digest), or None.
    """
    rows = read_manifest(dataset)
    fingerprint = dataset_fingerprint(rows)
    patients = {split: sorted({patient_of(r) for r in rows if r["split"] == split}) for split in SEEN_SPLITS}
    return {
        "version": VERSION,
        "dataset": str(dataset),
        "fingerprint": fingerprint,
        "patients": {split: sorted(hash_patient(k, fingerprint) for k in keys) for split, keys in patients.items()},
        "counts": {split: len(keys) for split, keys in patients.items()},
        "init_from": dict(init_from) if init_from is not None else None,
    }


@dataclass(frozen=True)
class Overlap:
    """Patients of an evaluated split that a model has seen. ``unknown``: the model has no record."""

    model: str
    split: str
    n_evaluated: int
    seen: dict[str, str]  # patient key -> the split it was in when the model saw it (train / val)
    unknown: bool = False

    def __bool__(self) -> bool:
        return self.unknown or bool(self.seen)

    def describe(self) -> str:
        """One line naming the model, the number of patients and (up to five of) their keys."""
        if self.unknown:
            return (f"{self.model}: its checkpoint does not record which patients it was trained on, so it cannot be "
                    f"shown to be held out on the {self.split} split")
        names = ", ".join(k.split(":", 1)[-1] for k in sorted(self.seen)[:5]) + (", ..." if len(self.seen) > 5 else "")
        roles = " and ".join(ROLES[r] for r in SEEN_SPLITS if r in self.seen.values())
        return (f"{self.model} saw {len(self.seen)} of the {self.n_evaluated} patients of the {self.split} split "
                f"during training (in its {roles} split: {names})")

    def as_dict(self) -> dict:
        return {"model": self.model, "split": self.split, "unknown": self.unknown, "n_evaluated": self.n_evaluated,
                "n_seen": len(self.seen), "patients": dict(sorted(self.seen.items()))}


def _records(record: Mapping) -> Iterable[Mapping]:
    while record:
        yield record
        record = record.get("init_from") or {}


def seen_patients(record: Mapping | None, keys: Iterable[str]) -> dict[str, str] | None:
    """Which of ``keys`` (patient keys) a model with this ``trained_on`` record has seen, and in
    which split; None when there is no record (unknown). The chain of ``init_from`` counts too."""
    if record is None:
        return None
    seen: dict[str, str] = {}
    keys = sorted(set(keys))
    for level in _records(record):
        if "fingerprint" not in level:  # started from a checkpoint without a record
            return None
        salt = level["fingerprint"]
        for split in SEEN_SPLITS:
            hashed = set(level["patients"].get(split, ()))
            for key in keys:
                if key not in seen and hash_patient(key, salt) in hashed:
                    seen[key] = split
    return seen


def check_held_out(model: str, record: Mapping | None, keys: Iterable[str], split: str) -> Overlap:
    """The overlap between a model's training patients and the patients ``keys`` of ``split``."""
    keys = sorted(set(keys))
    seen = seen_patients(record, keys)
    return Overlap(model, split, len(keys), seen or {}, unknown=seen is None)
