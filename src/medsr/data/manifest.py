"""Reading and checking a prepared data set (``manifest.csv`` + ``slices/``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from medsr import layout
from medsr.data.split import SPLIT_NAMES, group_key
from medsr.errors import MedsrError
from medsr.fsutil import read_csv
from medsr.io.types import IntensityMapping

MANIFEST = layout.MANIFEST


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


def patient_of(row: dict[str, str]) -> str:
    """The split key of a manifest row's patient (``patient:<id>``; see ``split.group_key``)."""
    return group_key(row["patient_id"], row["series_uid"], row["source"])


def mapping_of(row: dict[str, str]) -> IntensityMapping:
    """The intensity mapping of a manifest row (to map [0, 1] slices back to physical units)."""
    return IntensityMapping(
        float(row["intensity_lo"]),
        float(row["intensity_hi"]),
        row["intensity_method"],
        row["intensity_invert"] == "1",
        row["intensity_params"],
    )


def check_dataset(dataset: str | Path) -> list[str]:
    """Problems of a data set: missing slice files, patients in more than one split."""
    dataset = Path(dataset)
    rows = read_manifest(dataset)
    problems = [f"missing slice file {row['file']}" for row in rows if not (dataset / row["file"]).is_file()]
    splits_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        splits_of[patient_of(row)].add(row["split"])
    problems += [
        f"{key} appears in splits {', '.join(sorted(s))}"
        for key, s in sorted(splits_of.items())
        if len(s) > 1
    ]
    return problems


#: Patients listed one per line by ``summarize`` (the rest are counted).
MAX_PATIENT_LINES = 40


def summarize(dataset: str | Path) -> str:
    """A plain-text report: slices, patients, modalities and sizes per split, slices per patient
    (and where each patient id came from), then the checks."""
    rows = read_manifest(dataset)
    lines = [
        f"data set {dataset}: {len(rows)} slices",
        f"{'split':<6} {'slices':>7} {'patients':>9} {'per patient':>12}  modalities / sizes",
    ]
    per_patient: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        per_patient[patient_of(row)].append(row)
    for name in SPLIT_NAMES:
        members = [r for r in rows if r["split"] == name]
        counts = sorted(Counter(patient_of(r) for r in members).values())
        spread = f"{counts[0]}-{counts[len(counts) // 2]}-{counts[-1]}" if counts else "-"
        modalities = ", ".join(f"{m} {n}" for m, n in sorted(Counter(r["modality"] for r in members).items()))
        sizes = ", ".join(
            f"{s} {n}" for s, n in Counter(f"{r['height']}x{r['width']}" for r in members).most_common(3)
        )
        lines.append(
            f"{name:<6} {len(members):>7} {len(counts):>9} {spread:>12}  {modalities or '-'} / {sizes or '-'}"
        )
    lines.append("(per patient: fewest-median-most slices)")
    lines.append(f"{'patient':<32} {'split':<6} {'slices':>6}  modality  id from")
    ordered = sorted(
        per_patient.items(),
        key=lambda item: (
            SPLIT_NAMES.index(item[1][0]["split"]) if item[1][0]["split"] in SPLIT_NAMES else 9,
            item[0],
        ),
    )
    for key, members in ordered[:MAX_PATIENT_LINES]:
        modality = ",".join(sorted({r["modality"] for r in members}))
        lines.append(
            f"{key.split(':', 1)[-1]:<32} {members[0]['split']:<6} {len(members):>6}  {modality:<8}  {members[0].get('patient_from') or '-'}"
        )
    if len(ordered) > MAX_PATIENT_LINES:
        lines.append(f"... and {len(ordered) - MAX_PATIENT_LINES} more patients")
    problems = check_dataset(dataset)
    lines.append(
        "checks: "
        + ("every slice file present, no patient in two splits" if not problems else "; ".join(problems[:5]))
    )
    return "\n".join(lines)
