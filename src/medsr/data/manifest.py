"""Reading and checking a prepared data set (``manifest.csv`` + ``slices/``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from medsr.data.split import SPLIT_NAMES, group_key
from medsr.errors import MedsrError
from medsr.fsutil import read_csv
from medsr.io.types import IntensityMapping

MANIFEST = "manifest.csv"


def read_manifest(dataset: str | Path, *, split: str | None = None) -> list[dict[str, str]]:
    """Rows of a data set's manifest (all, or one split's), in file order.

    Raises:
        MedsrError: no manifest (not a data set, or an interrupted ``prepare``), or unknown split.
    """
    path = Path(dataset) / MANIFEST
    if not path.is_file():
        raise MedsrError(f"{dataset}: no {MANIFEST} (not a prepared data set, or prepare did not finish)")
    if split is not None and split not in SPLIT_NAMES:
        raise MedsrError(f"unknown split {split!r}; choose from {', '.join(SPLIT_NAMES)}")
    rows = read_csv(path)
    return [row for row in rows if split is None or row["split"] == split]


def mapping_of(row: dict[str, str]) -> IntensityMapping:
    """The intensity mapping of a manifest row (to map [0, 1] slices back to physical units)."""
    return IntensityMapping(
        float(row["intensity_lo"]), float(row["intensity_hi"]), row["intensity_method"],
        row["intensity_invert"] == "1", row["intensity_params"],
    )


def check_dataset(dataset: str | Path) -> list[str]:
    """Problems of a data set: missing slice files, patients in more than one split."""
    dataset = Path(dataset)
    rows = read_manifest(dataset)
    problems = [f"missing slice file {row['file']}" for row in rows if not (dataset / row["file"]).is_file()]
    splits_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        splits_of[group_key(row["patient_id"], row["series_uid"], row["source"])].add(row["split"])
    problems += [f"{key} appears in splits {', '.join(sorted(s))}" for key, s in sorted(splits_of.items()) if len(s) > 1]
    return problems


def summarize(dataset: str | Path) -> str:
    """A plain-text table: slices, patients, modalities and sizes per split, then the checks."""
    rows = read_manifest(dataset)
    lines = [f"data set {dataset}: {len(rows)} slices", f"{'split':<6} {'slices':>7} {'patients':>9}  modalities / sizes"]
    for name in SPLIT_NAMES:
        members = [r for r in rows if r["split"] == name]
        patients = {group_key(r["patient_id"], r["series_uid"], r["source"]) for r in members}
        modalities = ", ".join(f"{m} {n}" for m, n in sorted(Counter(r["modality"] for r in members).items()))
        sizes = ", ".join(f"{s} {n}" for s, n in Counter(f"{r['height']}x{r['width']}" for r in members).most_common(3))
        lines.append(f"{name:<6} {len(members):>7} {len(patients):>9}  {modalities or '-'} / {sizes or '-'}")
    problems = check_dataset(dataset)
    lines.append("checks: " + ("every slice file present, no patient in two splits" if not problems else "; ".join(problems[:5])))
    return "\n".join(lines)
