"""Print the tables of a built-in model's card (docs/models/<name>.md) from the data and evaluation
that made it, so that no figure in the card is typed by hand.

    .venv/bin/python scripts/model_card_tables.py --dataset runs/demo/dataset \
        --eval runs/zoo/medsr_x4/eval-test --model medsr-x4

Prints: the training patients (train and validation splits: modality, slices, source file, package,
licence); the held-out scores per method (whole image and foreground, overall and per modality,
95% patient t-intervals); the gain over bicubic per modality and per test patient.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections import defaultdict
from pathlib import Path

from medsr.data.manifest import read_manifest

METRICS = (
    ("psnr", "PSNR dB", 2),
    ("ssim", "SSIM", 4),
    ("psnr_fg", "PSNR fg dB", 2),
    ("ssim_fg", "SSIM fg", 4),
)


def training_patients(dataset: Path) -> None:
    rows = [r for r in read_manifest(dataset) if r["split"] in ("train", "val")]
    sources = {}
    sample_csv = Path(rows[0]["source"]).parent.parent / "sources.csv"
    if sample_csv.is_file():
        sources = {r["file"]: r for r in csv.DictReader(sample_csv.open())}
    by_patient: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_patient[row["patient_id"]].append(row)
    print("| patient | split | modality | slices | source file | package | licence |")
    print("|---|---|---|---|---|---|---|")
    for patient, members in sorted(by_patient.items(), key=lambda item: (item[1][0]["split"], item[0])):
        source = Path(members[0]["source"])
        info = sources.get(f"{source.parent.name}/{source.name}", {})
        package = f"{info.get('package', '?')}=={info.get('version', '?')}"
        print(
            f"| {patient} | {members[0]['split']} | {members[0]['modality']} | {len(members)} | "
            f"{source.name} | {package} | {info.get('licence', '?')} |"
        )


def _cell(stats: dict, digits: int, key: str = "mean", sign: str = "") -> str:
    """``mean [low, high]``, or the mean alone where one patient gives no interval."""
    low, high = stats["ci_low"], stats["ci_high"]
    interval = f" [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]" if math.isfinite(low) else ""
    return f"{stats[key]:{sign}.{digits}f}{interval}"


def scores(summary: dict) -> None:
    blocks = [("all", summary), *sorted(summary["by_modality"].items())]
    for title, block in blocks:
        print(f"\n{title}: {block['n_patients']} patients, {block['n_images']} slices\n")
        print("| method | " + " | ".join(label for _, label, _ in METRICS) + " |")
        print("|---|" + "---|" * len(METRICS))
        for method, stats in block["methods"].items():
            print(f"| {method} | " + " | ".join(_cell(stats[m], d) for m, _, d in METRICS) + " |")


def gains(summary: dict, metrics_csv: Path, model: str) -> None:
    blocks = [("all", summary), *sorted(summary["by_modality"].items())]
    print("\n| patients | PSNR gain dB [95% CI] | SSIM gain | PSNR fg gain | sign-flip p |")
    print("|---|---|---|---|---|")
    for title, block in blocks:
        gain = block["vs_baseline"][model]
        cells = [_cell(gain[m], d, "mean_diff", "+") for m, d in (("psnr", 2), ("ssim", 4), ("psnr_fg", 2))]
        print(
            f"| {title} ({block['n_patients']}) | "
            + " | ".join(cells)
            + f" | {gain['psnr']['p_patients']:.3f} |"
        )
    by_patient: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    modality = {}
    for row in csv.DictReader(metrics_csv.open()):
        by_patient[row["patient_id"]][row["method"]].append(float(row["psnr"]))
        modality[row["patient_id"]] = row["modality"]
    print("\n| test patient | modality | slices | bicubic PSNR | model PSNR | gain dB |")
    print("|---|---|---|---|---|---|")
    for patient, methods in sorted(by_patient.items()):
        base, ours = (sum(methods[m]) / len(methods[m]) for m in ("bicubic", model))
        print(
            f"| {patient.split(':', 1)[-1]} | {modality[patient]} | {len(methods[model])} | {base:.2f} | {ours:.2f} | {ours - base:+.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=Path("runs/demo/dataset"))
    parser.add_argument("--eval", type=Path, default=Path("runs/zoo/medsr_x4/eval-test"))
    parser.add_argument("--model", default="medsr-x4")
    args = parser.parse_args()
    summary = json.loads((args.eval / "summary.json").read_text())
    training_patients(args.dataset)
    scores(summary)
    gains(summary, args.eval / "metrics.csv", args.model)


if __name__ == "__main__":
    main()
